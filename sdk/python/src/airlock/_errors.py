"""Typed errors: each carries the daemon's message (`detail`), its code and the HTTP status."""

from __future__ import annotations

import json
from typing import Dict, Optional, Type


class AirlockError(Exception):
    """Any failure reported by the daemon or on the way to it.

    `message` is the daemon's `detail` (or the SDK's own text), `code` its stable snake_case
    error code (`not_found`, `forbidden`, ...) and `status` the HTTP status, when there was one.
    """

    def __init__(
        self, message: str, *, status: Optional[int] = None, code: Optional[str] = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status={self.status!r}, code={self.code!r})"
        )


class DaemonUnavailable(AirlockError):
    """The daemon could not be reached (no socket, refused, or an unsafe socket directory)."""


class BadRequest(AirlockError):
    """400: the request is wrong; the message names the field."""


class Unauthorized(AirlockError):
    """401: the TCP listener wants `Authorization: Bearer <token>` (pass `token=`)."""


class PolicyDenied(AirlockError):
    """403: the sandbox's policy (or the guest's permissions) refused the operation."""


class NotFound(AirlockError):
    """404: no such sandbox, exec, file or route."""


class Conflict(AirlockError):
    """409: the sandbox is starting, stopping or stopped; stdin is closed; or the daemon is full."""


class PayloadTooLarge(AirlockError):
    """413: the body is over the daemon's limit (64 MiB for files)."""


class BootFailed(AirlockError):
    """500 `boot_failed`: the sandbox did not boot."""


class InternalError(AirlockError):
    """500 `internal`: the host failed."""


_BY_CODE: Dict[str, Type[AirlockError]] = {
    "bad_request": BadRequest,
    "unauthorized": Unauthorized,
    "forbidden": PolicyDenied,
    "not_found": NotFound,
    "conflict": Conflict,
    "payload_too_large": PayloadTooLarge,
    "boot_failed": BootFailed,
    "internal": InternalError,
}

_BY_STATUS: Dict[int, Type[AirlockError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: PolicyDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    500: InternalError,
}

_STATUS_OF_CODE: Dict[str, int] = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "payload_too_large": 413,
    "boot_failed": 500,
    "internal": 500,
}


def error_for(code: str, detail: str, status: Optional[int] = None) -> AirlockError:
    """The exception for an `ErrorBody` {error: code, detail}."""
    if status is None:
        status = _STATUS_OF_CODE.get(code)
    cls = _BY_CODE.get(code) or (_BY_STATUS.get(status) if status else None) or AirlockError
    return cls(detail, status=status, code=code)


def error_from_response(status: int, body: bytes) -> AirlockError:
    """The exception for an HTTP error reply (the daemon's JSON `ErrorBody`, or any body)."""
    try:
        parsed = json.loads(body)
        code, detail = str(parsed["error"]), str(parsed["detail"])
    except (ValueError, KeyError, TypeError):
        text = body.decode("utf-8", errors="replace").strip()
        cls = _BY_STATUS.get(status, AirlockError)
        return cls(f"HTTP {status}: {text}" if text else f"HTTP {status}", status=status)
    return error_for(code, detail, status)
