"""Hand-written result types: exec output and audit records (the document leaves both open)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Union

from ._models import ExecExit


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Output:
    """A chunk of a running command's output."""

    stream: str
    """`stdout` or `stderr`."""
    data: bytes
    """The bytes, as the command wrote them."""

    @property
    def text(self) -> str:
        """`data` decoded as UTF-8 (invalid bytes replaced)."""
        return _text(self.data)


@dataclass(frozen=True)
class Exit:
    """How the command ended: the last event of an exec stream."""

    exit: ExecExit

    @property
    def exit_code(self) -> int:
        """What a shell would report: the code, 128+N for signal N, 126/127 if it never ran."""
        return self.exit.exit_code


ExecEvent = Union[Output, Exit]
"""What `exec_stream` yields: output chunks, then one `Exit`."""


@dataclass(frozen=True)
class ExecResult:
    """A finished command: its whole output and how it ended."""

    exec_id: str
    stdout_bytes: bytes
    stderr_bytes: bytes
    exit: ExecExit

    @property
    def stdout(self) -> str:
        """Standard output as UTF-8 text (invalid bytes replaced)."""
        return _text(self.stdout_bytes)

    @property
    def stderr(self) -> str:
        """Standard error as UTF-8 text (invalid bytes replaced)."""
        return _text(self.stderr_bytes)

    @property
    def exit_code(self) -> int:
        """What a shell would report: the code, 128+N for signal N, 126/127 if it never ran."""
        return self.exit.exit_code


@dataclass(frozen=True)
class FsInfo:
    """The file operation of an audit record."""

    op: str
    path: str
    to: Optional[str] = None
    mount: Optional[str] = None


@dataclass(frozen=True)
class NetInfo:
    """The network operation of an audit record."""

    host: Optional[str] = None
    port: Optional[int] = None
    ip: Optional[str] = None
    method: Optional[str] = None
    path: Optional[str] = None
    status: Optional[int] = None
    bytes_in: Optional[int] = None
    bytes_out: Optional[int] = None
    duration_ms: Optional[int] = None
    credential: Optional[str] = None


@dataclass(frozen=True)
class ProcInfo:
    """The process of an audit record (reported by the guest: never authoritative)."""

    pid: Optional[int] = None
    ppid: Optional[int] = None
    uid: Optional[int] = None
    argv: List[str] = field(default_factory=list)
    cwd: Optional[str] = None
    exit: Optional[int] = None
    signal: Optional[int] = None


@dataclass(frozen=True)
class Cut:
    """A text field cut to the record's cap: its full length and SHA-256."""

    field: str
    len: int
    sha256: str


def _pick(cls: Any, d: Optional[Mapping[str, Any]]) -> Any:
    if d is None:
        return None
    names = cls.__dataclass_fields__
    return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class AuditRecord:
    """One record of a sandbox's hash-chained audit log (see docs/audit.md)."""

    seq: int
    ts: str
    sandbox: str
    source: str
    """`host` (observed by the host: authoritative) or `guest` (reported by the guest)."""
    kind: str
    """Dotted kind: `sandbox.start`, `fs.write`, `net.connect`, `proc.exec`, ..."""
    prev: str
    hash: str
    decision: Optional[str] = None
    """`allow`, `deny` or `error`, for decisions."""
    rule: Optional[str] = None
    reason: Optional[str] = None
    fs: Optional[FsInfo] = None
    net: Optional[NetInfo] = None
    proc: Optional[ProcInfo] = None
    count: Optional[int] = None
    detail: Optional[str] = None
    cut: List[Cut] = field(default_factory=list)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The record's JSON object as received (fields newer than this SDK stay here)."""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AuditRecord:
        """Parse one audit record."""
        return cls(
            seq=d["seq"],
            ts=d["ts"],
            sandbox=d["sandbox"],
            source=d["source"],
            kind=d["kind"],
            prev=d["prev"],
            hash=d["hash"],
            decision=d.get("decision"),
            rule=d.get("rule"),
            reason=d.get("reason"),
            fs=_pick(FsInfo, d.get("fs")),
            net=_pick(NetInfo, d.get("net")),
            proc=_pick(ProcInfo, d.get("proc")),
            count=d.get("count"),
            detail=d.get("detail"),
            cut=[_pick(Cut, c) for c in d.get("cut") or []],
            raw=dict(d),
        )
