"""Python SDK for airlock: sandboxes (QEMU microVMs under a host-enforced policy) through the
local `airlock daemon`.

    from airlock import Sandbox
    with Sandbox.create(profile="default", workspace=".") as sb:
        r = sb.exec(["sh", "-c", "echo hi"])
"""

from ._async import AsyncClient, AsyncExecStream, AsyncFiles, AsyncSandbox
from ._config import default_socket
from ._errors import (
    AirlockError,
    BadRequest,
    BootFailed,
    Conflict,
    DaemonUnavailable,
    InternalError,
    NotFound,
    PayloadTooLarge,
    PolicyDenied,
    Unauthorized,
)
from ._models import (
    ExecExit,
    FileStat,
    FileWritten,
    PoolStatus,
    SandboxInfo,
    SandboxStatus,
    TerminalSize,
)
from ._sync import Client, ExecStream, Files, Sandbox
from ._types import (
    AuditRecord,
    Cut,
    ExecEvent,
    ExecResult,
    Exit,
    FsInfo,
    NetInfo,
    Output,
    ProcInfo,
)

__version__ = "0.1.0"

__all__ = [
    "AirlockError",
    "AsyncClient",
    "AsyncExecStream",
    "AsyncFiles",
    "AsyncSandbox",
    "AuditRecord",
    "BadRequest",
    "BootFailed",
    "Client",
    "Conflict",
    "Cut",
    "DaemonUnavailable",
    "ExecEvent",
    "ExecExit",
    "ExecResult",
    "ExecStream",
    "Exit",
    "FileStat",
    "FileWritten",
    "Files",
    "FsInfo",
    "InternalError",
    "NetInfo",
    "NotFound",
    "Output",
    "PayloadTooLarge",
    "PolicyDenied",
    "PoolStatus",
    "ProcInfo",
    "Sandbox",
    "SandboxInfo",
    "SandboxStatus",
    "TerminalSize",
    "Unauthorized",
    "default_socket",
]
