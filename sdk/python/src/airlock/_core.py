"""What the sync and async clients share: request bodies, paths and reply parsing (no I/O)."""

from __future__ import annotations

import base64
import json
import os
from typing import Any, Dict, Mapping, Optional, Sequence, Union
from urllib.parse import quote

import httpx

from . import _models as m
from ._config import Connection
from ._errors import AirlockError, DaemonUnavailable, error_for
from ._types import AuditRecord, ExecEvent, ExecResult, Exit, Output

USER_AGENT = "airlock-sandbox-python"

Data = Union[bytes, str]


def path(route: m.Route, **params: str) -> str:
    """`route`'s path with its parameters filled in (each percent-encoded)."""
    return route.path.format(**{k: quote(v, safe="") for k, v in params.items()})


def as_bytes(data: Data) -> bytes:
    """`data` as bytes (text is encoded as UTF-8)."""
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def create_body(
    *,
    image: Optional[str],
    profile: Optional[str],
    policy: Optional[str],
    policy_origin: Optional[str],
    agent: Optional[str],
    workspace: Optional[Union[str, "os.PathLike[str]"]],
    cpus: Optional[int],
    memory_mib: Optional[int],
    labels: Optional[Mapping[str, str]],
    idle_timeout_secs: Optional[int],
    max_lifetime_secs: Optional[int],
) -> Dict[str, Any]:
    """The body of `POST /v1/sandboxes`; a relative workspace is made absolute here."""
    return m.CreateSandboxRequest(
        image=image,
        profile=profile,
        policy=policy,
        policy_origin=policy_origin,
        agent=agent,
        workspace=os.path.abspath(os.fspath(workspace)) if workspace is not None else None,
        cpus=cpus,
        memory_mib=memory_mib,
        labels=dict(labels or {}),
        idle_timeout_secs=idle_timeout_secs,
        max_lifetime_secs=max_lifetime_secs,
    ).to_dict()


def exec_body(
    argv: Sequence[str],
    *,
    env: Optional[Mapping[str, str]],
    cwd: Optional[str],
    stdin: Optional[Data],
    stdin_open: bool,
    tty: bool,
    size: Optional[m.TerminalSize],
) -> Dict[str, Any]:
    """The body of `POST .../exec`."""
    if isinstance(argv, (str, bytes)):
        raise TypeError('argv is a list of arguments, e.g. ["sh", "-c", "echo hi"]')
    return m.ExecBody(
        argv=list(argv),
        env=dict(env or {}),
        cwd=cwd,
        tty=tty,
        size=size,
        stdin=b64(stdin) if stdin is not None else None,
        stdin_open=stdin_open,
    ).to_dict()


def b64(data: Data) -> str:
    """Base64 of `data`, as the API carries bytes in JSON."""
    return base64.b64encode(as_bytes(data)).decode("ascii")


def stdin_body(data: Data, eof: bool) -> Dict[str, Any]:
    """The body of `POST .../stdin`."""
    raw = as_bytes(data)
    return m.StdinBody(data=b64(raw) if raw else None, eof=eof).to_dict()


def mode_param(mode: Optional[Union[int, str]]) -> Optional[str]:
    """Permission bits as the API's octal text (`0o644` and `"644"` both give `"644"`)."""
    if mode is None:
        return None
    return format(mode, "o") if isinstance(mode, int) else mode


def transport_error(conn: Connection, e: httpx.TransportError) -> AirlockError:
    """The error for a failed connection or read."""
    if isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout)):
        return DaemonUnavailable(
            f"cannot reach the airlock daemon at {conn.where()}: {e} (is `airlock daemon` running?)"
        )
    if isinstance(e, httpx.TimeoutException):
        return AirlockError(
            f"no answer from the daemon at {conn.where()} within timeout={conn.timeout} s "
            f"({type(e).__name__}); the request was abandoned"
        )
    return DaemonUnavailable(f"the connection to the daemon at {conn.where()} broke: {e!r}")


def exec_event(line: str) -> Union[str, ExecEvent]:
    """One NDJSON line of an exec: its id (str), an `Output` or an `Exit`; `error` raises."""
    parsed = m.ExecLine.from_dict(json.loads(line))
    if parsed.error is not None:
        raise error_for(parsed.error.error, parsed.error.detail)
    if parsed.exec_id is not None:
        return parsed.exec_id
    if parsed.exit is not None:
        return Exit(parsed.exit)
    if parsed.data is not None:
        return Output(parsed.stream or "stdout", base64.b64decode(parsed.data))
    raise AirlockError(f"unexpected exec line from the daemon: {line!r}")


def first_exec_id(event: Union[str, ExecEvent, None]) -> str:
    """Checks that an exec stream starts with its id."""
    if not isinstance(event, str):
        raise AirlockError(f"the exec stream did not start with its exec_id: {event!r}")
    return event


def no_exit() -> AirlockError:
    """The error for a stream that ended without an exit."""
    return AirlockError("the exec stream ended without the command's exit (connection lost?)")


class Collector:
    """Gathers a stream's events into an `ExecResult`."""

    def __init__(self, exec_id: str) -> None:
        self.exec_id = exec_id
        self.out = bytearray()
        self.err = bytearray()

    def add(self, ev: ExecEvent) -> Optional[ExecResult]:
        """Takes one event; returns the result at the exit."""
        if isinstance(ev, Exit):
            return ExecResult(self.exec_id, bytes(self.out), bytes(self.err), ev.exit)
        (self.err if ev.stream == "stderr" else self.out).extend(ev.data)
        return None


def audit_record(line: str) -> AuditRecord:
    """One NDJSON line of `/events`; an `{"error": ...}` line raises."""
    d = json.loads(line)
    if "error" in d and "seq" not in d:
        e = m.ErrorBody.from_dict(d["error"])
        raise error_for(e.error, e.detail)
    return AuditRecord.from_dict(d)
