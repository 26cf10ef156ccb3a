"""Where the daemon listens: the same unix socket rules as the `airlock` CLI, or TCP + token."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Dict, Optional, Union

from ._errors import DaemonUnavailable

PathLike = Union[str, "os.PathLike[str]"]

#: The connect timeout, in seconds (reads wait as long as the daemon takes unless `timeout`).
CONNECT_TIMEOUT = 10.0


def fallback_dir() -> str:
    """`/tmp/airlock-<uid>`: the socket directory without root or `XDG_RUNTIME_DIR`."""
    return f"/tmp/airlock-{os.getuid()}"


def default_socket() -> str:
    """The daemon's socket, as the daemon and CLI choose it.

    `$AIRLOCK_SOCKET`, else `/run/airlock/airlock.sock` for root, else
    `$XDG_RUNTIME_DIR/airlock.sock`, else `/tmp/airlock-<uid>/airlock.sock`.
    """
    env = os.environ.get("AIRLOCK_SOCKET")
    if env:
        return env
    if os.geteuid() == 0:
        return "/run/airlock/airlock.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "airlock.sock")
    return os.path.join(fallback_dir(), "airlock.sock")


def check_socket_dir(socket: str) -> None:
    """Refuse a socket in the shared fallback directory unless that directory is ours.

    Another user could create `/tmp/airlock-<uid>` first and serve a socket of their own, so
    (like the CLI) the SDK talks through it only when it is a real directory owned by this user
    with mode 0700. A missing directory is fine: connecting then says nothing listens.
    """
    directory = os.path.dirname(socket)
    if directory != fallback_dir():
        return
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        found = "symbolic link" if stat.S_ISLNK(st.st_mode) else "file that is not a directory"
        raise DaemonUnavailable(
            f"socket directory {directory} is a {found}, expected a directory this user owns "
            "with mode 0700; remove it"
        )
    if st.st_uid != os.geteuid():
        raise DaemonUnavailable(
            f"socket directory {directory} is owned by uid {st.st_uid}, expected uid "
            f"{os.geteuid()} (this user) with mode 0700; another user may have created it, "
            "remove it"
        )
    mode = stat.S_IMODE(st.st_mode) & 0o777
    if mode != 0o700:
        raise DaemonUnavailable(
            f"socket directory {directory} has mode {mode:04o}, expected 0700 (no access for "
            "group or others); `chmod 700` it if you made it"
        )


@dataclass(frozen=True)
class Connection:
    """How to reach the daemon: a unix `socket`, or TCP at `base_url` with a bearer `token`."""

    socket: Optional[str]
    base_url: str
    token: Optional[str]
    timeout: Optional[float]

    @classmethod
    def resolve(
        cls,
        socket: Optional[PathLike] = None,
        *,
        base_url: Optional[str] = None,
        token: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> Connection:
        """Pick the socket or URL from the arguments, the environment and the defaults."""
        if socket is not None and base_url is not None:
            raise ValueError("give socket= or base_url=, not both")
        if base_url is not None:
            return cls(None, base_url.rstrip("/"), token, timeout)
        path = os.fspath(socket) if socket is not None else default_socket()
        check_socket_dir(path)
        return cls(path, "http://airlock", token, timeout)

    def where(self) -> str:
        """The daemon's address, for messages."""
        return f"unix socket {self.socket}" if self.socket else self.base_url

    def headers(self, user_agent: str) -> Dict[str, str]:
        """Headers for every request."""
        h = {"User-Agent": user_agent}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h
