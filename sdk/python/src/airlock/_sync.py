"""The blocking client: `Client`, `Sandbox`, `Files` and `ExecStream`."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Type, Union

import httpx

from . import _core as core
from . import _models as m
from ._config import CONNECT_TIMEOUT, Connection, PathLike
from ._errors import AirlockError, NotFound, error_from_response
from ._types import AuditRecord, ExecEvent, ExecResult, Exit

Params = Optional[Dict[str, Any]]


class Client:
    """A connection to the airlock daemon.

    By default it uses the daemon's unix socket (`$AIRLOCK_SOCKET`, else the daemon's default);
    pass `socket=` for another, or `base_url=` and `token=` for the TCP listener. `timeout`
    bounds each read in seconds (default: none, as commands may be quiet for long).
    """

    def __init__(
        self,
        socket: Optional[PathLike] = None,
        *,
        base_url: Optional[str] = None,
        token: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> None:
        self.connection = Connection.resolve(
            socket, base_url=base_url, token=token, timeout=timeout
        )
        c = self.connection
        self._http = httpx.Client(
            transport=httpx.HTTPTransport(uds=c.socket) if c.socket else None,
            base_url=c.base_url,
            headers=c.headers(core.USER_AGENT),
            timeout=httpx.Timeout(c.timeout, connect=CONNECT_TIMEOUT),
        )

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------------

    def _send(
        self,
        route: m.Route,
        url: str,
        *,
        json_body: Any = None,
        content: Optional[bytes] = None,
        params: Params = None,
        stream: bool = False,
    ) -> httpx.Response:
        req = self._http.build_request(
            route.method,
            url,
            json=json_body,
            content=content,
            params={k: v for k, v in (params or {}).items() if v is not None},
        )
        try:
            resp = self._http.send(req, stream=stream)
        except httpx.TransportError as e:
            raise core.transport_error(self.connection, e) from e
        if resp.status_code >= 400:
            try:
                body = resp.read()
            finally:
                resp.close()
            raise error_from_response(resp.status_code, body)
        return resp

    def _json(self, route: m.Route, url: str, **kw: Any) -> Any:
        return self._send(route, url, **kw).json()

    def _lines(self, resp: httpx.Response) -> Iterator[str]:
        try:
            for line in resp.iter_lines():
                if line:
                    yield line
        except httpx.TransportError as e:
            raise core.transport_error(self.connection, e) from e
        finally:
            resp.close()

    # -- sandboxes ------------------------------------------------------------------------------

    def create(
        self,
        *,
        image: Optional[str] = None,
        profile: Optional[str] = None,
        policy: Optional[str] = None,
        policy_origin: Optional[str] = None,
        agent: Optional[str] = None,
        workspace: Optional[PathLike] = None,
        cpus: Optional[int] = None,
        memory_mib: Optional[int] = None,
        labels: Optional[Mapping[str, str]] = None,
        idle_timeout_secs: Optional[int] = None,
        max_lifetime_secs: Optional[int] = None,
    ) -> Sandbox:
        """Create a sandbox and wait until it runs. `workspace` may be relative (to the cwd)."""
        body = core.create_body(
            image=image,
            profile=profile,
            policy=policy,
            policy_origin=policy_origin,
            agent=agent,
            workspace=workspace,
            cpus=cpus,
            memory_mib=memory_mib,
            labels=labels,
            idle_timeout_secs=idle_timeout_secs,
            max_lifetime_secs=max_lifetime_secs,
        )
        r = m.CREATE_SANDBOX
        info = m.SandboxInfo.from_dict(self._json(r, core.path(r), json_body=body))
        return Sandbox(self, info)

    def get(self, sandbox_id: str) -> Sandbox:
        """An existing sandbox by id (raises `NotFound`)."""
        r = m.GET_SANDBOX
        return Sandbox(self, m.SandboxInfo.from_dict(self._json(r, core.path(r, id=sandbox_id))))

    def list(self) -> List[m.SandboxInfo]:
        """Every sandbox the daemon knows, oldest first."""
        r = m.LIST_SANDBOXES
        return m.SandboxList.from_dict(self._json(r, core.path(r))).sandboxes

    def pool(self) -> m.PoolStatus:
        """The daemon's warm pool (raises `NotFound` if it keeps none)."""
        r = m.GET_POOL
        return m.PoolStatus.from_dict(self._json(r, core.path(r)))

    def openapi(self) -> Dict[str, Any]:
        """The daemon's OpenAPI document."""
        r = m.OPENAPI_JSON
        doc: Dict[str, Any] = self._json(r, core.path(r))
        return doc


class Sandbox:
    """A sandbox in the daemon. As a context manager it deletes the sandbox on exit."""

    def __init__(self, client: Client, info: m.SandboxInfo, *, owns_client: bool = False) -> None:
        self.client = client
        self.info = info
        self.files = Files(self)
        self._owns_client = owns_client

    @classmethod
    def create(
        cls,
        *,
        image: Optional[str] = None,
        profile: Optional[str] = None,
        policy: Optional[str] = None,
        policy_origin: Optional[str] = None,
        agent: Optional[str] = None,
        workspace: Optional[PathLike] = None,
        cpus: Optional[int] = None,
        memory_mib: Optional[int] = None,
        labels: Optional[Mapping[str, str]] = None,
        idle_timeout_secs: Optional[int] = None,
        max_lifetime_secs: Optional[int] = None,
        client: Optional[Client] = None,
        socket: Optional[PathLike] = None,
        base_url: Optional[str] = None,
        token: Optional[str] = None,
    ) -> Sandbox:
        """Create a sandbox (options as in `Client.create`) on `client`, or on a new client
        for `socket`/`base_url`/`token` that the sandbox closes when deleted."""
        own = client is None
        c = client or Client(socket, base_url=base_url, token=token)
        try:
            sb = c.create(
                image=image,
                profile=profile,
                policy=policy,
                policy_origin=policy_origin,
                agent=agent,
                workspace=workspace,
                cpus=cpus,
                memory_mib=memory_mib,
                labels=labels,
                idle_timeout_secs=idle_timeout_secs,
                max_lifetime_secs=max_lifetime_secs,
            )
        except BaseException:
            if own:
                c.close()
            raise
        sb._owns_client = own
        return sb

    @classmethod
    def connect(
        cls,
        sandbox_id: str,
        *,
        client: Optional[Client] = None,
        socket: Optional[PathLike] = None,
        base_url: Optional[str] = None,
        token: Optional[str] = None,
    ) -> Sandbox:
        """An existing sandbox by id (raises `NotFound`), on `client` or a new client."""
        own = client is None
        c = client or Client(socket, base_url=base_url, token=token)
        try:
            sb = c.get(sandbox_id)
        except BaseException:
            if own:
                c.close()
            raise
        sb._owns_client = own
        return sb

    @property
    def id(self) -> str:
        """The sandbox id."""
        return self.info.id

    def __repr__(self) -> str:
        return f"Sandbox(id={self.id!r}, status={self.info.status.value!r})"

    def _p(self, route: m.Route, **params: str) -> str:
        return core.path(route, id=self.id, **params)

    def refresh(self) -> m.SandboxInfo:
        """Fetch the sandbox's current state into `info`."""
        r = m.GET_SANDBOX
        self.info = m.SandboxInfo.from_dict(self.client._json(r, self._p(r)))
        return self.info

    def exec_stream(
        self,
        argv: Sequence[str],
        *,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        stdin: Optional[core.Data] = None,
        stdin_open: bool = False,
        tty: bool = False,
        size: Optional[m.TerminalSize] = None,
    ) -> ExecStream:
        """Start a command; iterate the result for `Output` chunks, then one `Exit`.

        With `stdin_open`, feed input with `send_stdin` while it runs.
        """
        body = core.exec_body(
            argv, env=env, cwd=cwd, stdin=stdin, stdin_open=stdin_open, tty=tty, size=size
        )
        r = m.EXEC_COMMAND
        resp = self.client._send(r, self._p(r), json_body=body, stream=True)
        return ExecStream(self, resp)

    def exec(
        self,
        argv: Sequence[str],
        *,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        stdin: Optional[core.Data] = None,
    ) -> ExecResult:
        """Run a command to the end and return its output and exit status."""
        with self.exec_stream(argv, env=env, cwd=cwd, stdin=stdin) as s:
            return s.wait()

    def events(self) -> List[AuditRecord]:
        """The audit log so far, as typed records."""
        return list(self._events(follow=False))

    def events_stream(self) -> Iterator[AuditRecord]:
        """The audit log, then new records as they are written, until the sandbox ends."""
        return self._events(follow=True)

    def _events(self, follow: bool) -> Iterator[AuditRecord]:
        r = m.SANDBOX_EVENTS
        params = {"follow": "true"} if follow else None
        resp = self.client._send(r, self._p(r), params=params, stream=True)
        for line in self.client._lines(resp):
            yield core.audit_record(line)

    def stats(self) -> Dict[str, Any]:
        """The sandbox's counters (the JSON of `airlock stats`)."""
        r = m.SANDBOX_STATS
        stats: Dict[str, Any] = self.client._json(r, self._p(r))
        return stats

    def stop(self) -> m.SandboxInfo:
        """Stop the sandbox but keep its record."""
        r = m.STOP_SANDBOX
        self.info = m.SandboxInfo.from_dict(self.client._json(r, self._p(r)))
        return self.info

    def delete(self) -> None:
        """Stop the sandbox if it runs and forget it."""
        r = m.DELETE_SANDBOX
        try:
            self.client._send(r, self._p(r)).close()
        finally:
            if self._owns_client:
                self.client.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        try:
            self.delete()
        except NotFound:
            pass


class Files:
    """Files in the guest, read and written as the workload user under the policy."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sb = sandbox

    def read(self, path: str) -> bytes:
        """The file's bytes (at most 64 MiB)."""
        r = m.READ_FILE
        return self._sb.client._send(r, self._sb._p(r), params={"path": path}).content

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        """The file decoded as text."""
        return self.read(path).decode(encoding)

    def write(
        self, path: str, data: core.Data, *, mode: Optional[Union[int, str]] = None
    ) -> m.FileWritten:
        """Create or replace the file (text is written as UTF-8); `mode` like `0o644`."""
        r = m.WRITE_FILE
        params = {"path": path, "mode": core.mode_param(mode)}
        resp = self._sb.client._send(
            r, self._sb._p(r), params=params, content=core.as_bytes(data)
        )
        return m.FileWritten.from_dict(resp.json())

    def stat(self, path: str) -> m.FileStat:
        """The path's metadata (a final symlink is not followed)."""
        r = m.STAT_FILE
        return m.FileStat.from_dict(self._sb.client._json(r, self._sb._p(r), params={"path": path}))

    def list(self, path: str) -> List[m.FileStat]:
        """The directory's entries, sorted by name."""
        r = m.LIST_FILES
        d = self._sb.client._json(r, self._sb._p(r), params={"path": path})
        return m.FileList.from_dict(d).entries

    def exists(self, path: str) -> bool:
        """Whether the path exists in the guest."""
        try:
            self.stat(path)
        except NotFound:
            return False
        return True


class ExecStream:
    """A running command: iterate it for its events; drive it with stdin, signals, resizes.

    Closing the stream (or leaving its `with` block) before the exit ends the command.
    """

    def __init__(self, sandbox: Sandbox, resp: httpx.Response) -> None:
        self._sb = sandbox
        self._lines = sandbox.client._lines(resp)
        self._resp = resp
        self.exit: Optional[m.ExecExit] = None
        """How the command ended, once the stream has reached its end."""
        try:
            self.exec_id = core.first_exec_id(core.exec_event(next(self._lines)))
        except StopIteration:
            raise core.no_exit() from None
        except BaseException:
            self.close()
            raise

    def __iter__(self) -> Iterator[ExecEvent]:
        return self

    def __next__(self) -> ExecEvent:
        if self.exit is not None:
            raise StopIteration
        try:
            line = next(self._lines)
        except StopIteration:
            raise core.no_exit() from None
        ev = core.exec_event(line)
        if isinstance(ev, str):
            raise AirlockError(f"a second exec_id in the exec stream: {ev!r}")
        if isinstance(ev, Exit):
            self.exit = ev.exit
            # Nothing follows the exit; reading to the end frees the connection.
            for _ in self._lines:
                pass
        return ev

    def wait(self) -> ExecResult:
        """Read the rest of the output and return the result."""
        collect = core.Collector(self.exec_id)
        for ev in self:
            done = collect.add(ev)
            if done is not None:
                return done
        raise core.no_exit()

    def _post(self, route: m.Route, body: Dict[str, Any]) -> None:
        url = core.path(route, id=self._sb.id, exec_id=self.exec_id)
        self._sb.client._send(route, url, json_body=body).close()

    def send_stdin(self, data: core.Data = b"", *, eof: bool = False) -> None:
        """Write to the command's stdin (needs `stdin_open=True`); `eof` closes it after."""
        self._post(m.EXEC_STDIN, core.stdin_body(data, eof))

    def close_stdin(self) -> None:
        """Close the command's stdin."""
        self.send_stdin(eof=True)

    def signal(self, signal: Union[int, str]) -> None:
        """Send a signal (number or name such as `"TERM"`) to the command's process group."""
        self._post(m.EXEC_SIGNAL, m.SignalBody(signal=signal).to_dict())

    def resize(self, rows: int, cols: int) -> None:
        """Resize the command's terminal (with `tty=True`)."""
        self._post(m.EXEC_RESIZE, m.TerminalSize(rows=rows, cols=cols).to_dict())

    def close(self) -> None:
        """Drop the connection (ending the command if it still runs)."""
        self._resp.close()

    def __enter__(self) -> ExecStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
