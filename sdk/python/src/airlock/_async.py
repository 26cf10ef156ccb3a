"""The asyncio client: `AsyncClient`, `AsyncSandbox`, `AsyncFiles` and `AsyncExecStream`.

The same calls as the blocking client, awaited; streams are async iterators.
"""

from __future__ import annotations

from types import TracebackType
from typing import (
    Any,
    AsyncIterator,
    Coroutine,
    Dict,
    Generator,
    Generic,
    List,
    Mapping,
    Optional,
    Sequence,
    Type,
    TypeVar,
    Union,
)

import httpx

from . import _core as core
from . import _models as m
from ._config import CONNECT_TIMEOUT, Connection, PathLike
from ._errors import AirlockError, NotFound, error_from_response
from ._types import AuditRecord, ExecEvent, ExecResult, Exit

Params = Optional[Dict[str, Any]]
_T = TypeVar("_T", "AsyncSandbox", "AsyncExecStream")


class Opening(Generic[_T]):
    """A sandbox or exec being opened: `await` it, or use it directly in `async with`."""

    def __init__(self, coro: Coroutine[Any, Any, _T]) -> None:
        self._coro: Coroutine[Any, Any, _T] = coro
        self._value: Optional[_T] = None

    def __await__(self) -> Generator[Any, None, _T]:
        return self._coro.__await__()

    async def __aenter__(self) -> _T:
        self._value = await self._coro
        await self._value.__aenter__()
        return self._value

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self._value is not None:
            await self._value.__aexit__(exc_type, exc, tb)


class AsyncClient:
    """A connection to the airlock daemon for asyncio code (see `Client` for the arguments)."""

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
        self._http = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=c.socket) if c.socket else None,
            base_url=c.base_url,
            headers=c.headers(core.USER_AGENT),
            timeout=httpx.Timeout(c.timeout, connect=CONNECT_TIMEOUT),
        )

    async def close(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _send(
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
            resp = await self._http.send(req, stream=stream)
        except httpx.TransportError as e:
            raise core.transport_error(self.connection, e) from e
        if resp.status_code >= 400:
            try:
                body = await resp.aread()
            finally:
                await resp.aclose()
            raise error_from_response(resp.status_code, body)
        return resp

    async def _json(self, route: m.Route, url: str, **kw: Any) -> Any:
        return (await self._send(route, url, **kw)).json()

    async def _lines(self, resp: httpx.Response) -> AsyncIterator[str]:
        try:
            async for line in resp.aiter_lines():
                if line:
                    yield line
        except httpx.TransportError as e:
            raise core.transport_error(self.connection, e) from e
        finally:
            await resp.aclose()

    async def create(
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
    ) -> AsyncSandbox:
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
        info = m.SandboxInfo.from_dict(await self._json(r, core.path(r), json_body=body))
        return AsyncSandbox(self, info)

    async def get(self, sandbox_id: str) -> AsyncSandbox:
        """An existing sandbox by id (raises `NotFound`)."""
        r = m.GET_SANDBOX
        info = m.SandboxInfo.from_dict(await self._json(r, core.path(r, id=sandbox_id)))
        return AsyncSandbox(self, info)

    async def list(self) -> List[m.SandboxInfo]:
        """Every sandbox the daemon knows, oldest first."""
        r = m.LIST_SANDBOXES
        return m.SandboxList.from_dict(await self._json(r, core.path(r))).sandboxes

    async def pool(self) -> m.PoolStatus:
        """The daemon's warm pool (raises `NotFound` if it keeps none)."""
        r = m.GET_POOL
        return m.PoolStatus.from_dict(await self._json(r, core.path(r)))

    async def openapi(self) -> Dict[str, Any]:
        """The daemon's OpenAPI document."""
        r = m.OPENAPI_JSON
        doc: Dict[str, Any] = await self._json(r, core.path(r))
        return doc


class AsyncSandbox:
    """A sandbox in the daemon. As an async context manager it deletes the sandbox on exit."""

    def __init__(
        self, client: AsyncClient, info: m.SandboxInfo, *, owns_client: bool = False
    ) -> None:
        self.client = client
        self.info = info
        self.files = AsyncFiles(self)
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
        client: Optional[AsyncClient] = None,
        socket: Optional[PathLike] = None,
        base_url: Optional[str] = None,
        token: Optional[str] = None,
    ) -> Opening[AsyncSandbox]:
        """Create a sandbox (see `Sandbox.create`): `await` it, or `async with` it."""
        return Opening(
            cls._create(
                client,
                socket,
                base_url,
                token,
                dict(
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
                ),
            )
        )

    @staticmethod
    async def _create(
        client: Optional[AsyncClient],
        socket: Optional[PathLike],
        base_url: Optional[str],
        token: Optional[str],
        options: Dict[str, Any],
    ) -> AsyncSandbox:
        own = client is None
        c = client or AsyncClient(socket, base_url=base_url, token=token)
        try:
            sb = await c.create(**options)
        except BaseException:
            if own:
                await c.close()
            raise
        sb._owns_client = own
        return sb

    @classmethod
    async def connect(
        cls,
        sandbox_id: str,
        *,
        client: Optional[AsyncClient] = None,
        socket: Optional[PathLike] = None,
        base_url: Optional[str] = None,
        token: Optional[str] = None,
    ) -> AsyncSandbox:
        """An existing sandbox by id (raises `NotFound`), on `client` or a new client."""
        own = client is None
        c = client or AsyncClient(socket, base_url=base_url, token=token)
        try:
            sb = await c.get(sandbox_id)
        except BaseException:
            if own:
                await c.close()
            raise
        sb._owns_client = own
        return sb

    @property
    def id(self) -> str:
        """The sandbox id."""
        return self.info.id

    def __repr__(self) -> str:
        return f"AsyncSandbox(id={self.id!r}, status={self.info.status.value!r})"

    def _p(self, route: m.Route, **params: str) -> str:
        return core.path(route, id=self.id, **params)

    async def refresh(self) -> m.SandboxInfo:
        """Fetch the sandbox's current state into `info`."""
        r = m.GET_SANDBOX
        self.info = m.SandboxInfo.from_dict(await self.client._json(r, self._p(r)))
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
    ) -> Opening[AsyncExecStream]:
        """Start a command: `await` it (or `async with` it), then `async for` over the stream
        for `Output` chunks and one `Exit`."""
        body = core.exec_body(
            argv, env=env, cwd=cwd, stdin=stdin, stdin_open=stdin_open, tty=tty, size=size
        )
        return Opening(self._exec_stream(body))

    async def _exec_stream(self, body: Dict[str, Any]) -> AsyncExecStream:
        r = m.EXEC_COMMAND
        resp = await self.client._send(r, self._p(r), json_body=body, stream=True)
        stream = AsyncExecStream(self, resp)
        await stream._start()
        return stream

    async def exec(
        self,
        argv: Sequence[str],
        *,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        stdin: Optional[core.Data] = None,
    ) -> ExecResult:
        """Run a command to the end and return its output and exit status."""
        async with self.exec_stream(argv, env=env, cwd=cwd, stdin=stdin) as s:
            return await s.wait()

    async def events(self) -> List[AuditRecord]:
        """The audit log so far, as typed records."""
        return [r async for r in self._events(follow=False)]

    def events_stream(self) -> AsyncIterator[AuditRecord]:
        """The audit log, then new records as they are written, until the sandbox ends."""
        return self._events(follow=True)

    async def _events(self, follow: bool) -> AsyncIterator[AuditRecord]:
        r = m.SANDBOX_EVENTS
        params = {"follow": "true"} if follow else None
        resp = await self.client._send(r, self._p(r), params=params, stream=True)
        async for line in self.client._lines(resp):
            yield core.audit_record(line)

    async def stats(self) -> Dict[str, Any]:
        """The sandbox's counters (the JSON of `airlock stats`)."""
        r = m.SANDBOX_STATS
        stats: Dict[str, Any] = await self.client._json(r, self._p(r))
        return stats

    async def stop(self) -> m.SandboxInfo:
        """Stop the sandbox but keep its record."""
        r = m.STOP_SANDBOX
        self.info = m.SandboxInfo.from_dict(await self.client._json(r, self._p(r)))
        return self.info

    async def delete(self) -> None:
        """Stop the sandbox if it runs and forget it."""
        r = m.DELETE_SANDBOX
        try:
            await (await self.client._send(r, self._p(r))).aclose()
        finally:
            if self._owns_client:
                await self.client.close()

    async def __aenter__(self) -> AsyncSandbox:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        try:
            await self.delete()
        except NotFound:
            pass


class AsyncFiles:
    """Files in the guest, read and written as the workload user under the policy."""

    def __init__(self, sandbox: AsyncSandbox) -> None:
        self._sb = sandbox

    async def read(self, path: str) -> bytes:
        """The file's bytes (at most 64 MiB)."""
        r = m.READ_FILE
        return (await self._sb.client._send(r, self._sb._p(r), params={"path": path})).content

    async def read_text(self, path: str, encoding: str = "utf-8") -> str:
        """The file decoded as text."""
        return (await self.read(path)).decode(encoding)

    async def write(
        self, path: str, data: core.Data, *, mode: Optional[Union[int, str]] = None
    ) -> m.FileWritten:
        """Create or replace the file (text is written as UTF-8); `mode` like `0o644`."""
        r = m.WRITE_FILE
        params = {"path": path, "mode": core.mode_param(mode)}
        resp = await self._sb.client._send(
            r, self._sb._p(r), params=params, content=core.as_bytes(data)
        )
        return m.FileWritten.from_dict(resp.json())

    async def stat(self, path: str) -> m.FileStat:
        """The path's metadata (a final symlink is not followed)."""
        r = m.STAT_FILE
        d = await self._sb.client._json(r, self._sb._p(r), params={"path": path})
        return m.FileStat.from_dict(d)

    async def list(self, path: str) -> List[m.FileStat]:
        """The directory's entries, sorted by name."""
        r = m.LIST_FILES
        d = await self._sb.client._json(r, self._sb._p(r), params={"path": path})
        return m.FileList.from_dict(d).entries

    async def exists(self, path: str) -> bool:
        """Whether the path exists in the guest."""
        try:
            await self.stat(path)
        except NotFound:
            return False
        return True


class AsyncExecStream:
    """A running command (see `ExecStream`): `async for` gives its events."""

    def __init__(self, sandbox: AsyncSandbox, resp: httpx.Response) -> None:
        self._sb = sandbox
        self._resp = resp
        self._lines = sandbox.client._lines(resp)
        self.exec_id = ""
        self.exit: Optional[m.ExecExit] = None
        """How the command ended, once the stream has reached its end."""

    async def _start(self) -> None:
        try:
            self.exec_id = core.first_exec_id(core.exec_event(await self._lines.__anext__()))
        except StopAsyncIteration:
            raise core.no_exit() from None
        except BaseException:
            await self.close()
            raise

    def __aiter__(self) -> AsyncExecStream:
        return self

    async def __anext__(self) -> ExecEvent:
        if self.exit is not None:
            raise StopAsyncIteration
        try:
            line = await self._lines.__anext__()
        except StopAsyncIteration:
            raise core.no_exit() from None
        ev = core.exec_event(line)
        if isinstance(ev, str):
            raise AirlockError(f"a second exec_id in the exec stream: {ev!r}")
        if isinstance(ev, Exit):
            self.exit = ev.exit
            # Nothing follows the exit; reading to the end frees the connection.
            async for _ in self._lines:
                pass
        return ev

    async def wait(self) -> ExecResult:
        """Read the rest of the output and return the result."""
        collect = core.Collector(self.exec_id)
        async for ev in self:
            done = collect.add(ev)
            if done is not None:
                return done
        raise core.no_exit()

    async def _post(self, route: m.Route, body: Dict[str, Any]) -> None:
        url = core.path(route, id=self._sb.id, exec_id=self.exec_id)
        await (await self._sb.client._send(route, url, json_body=body)).aclose()

    async def send_stdin(self, data: core.Data = b"", *, eof: bool = False) -> None:
        """Write to the command's stdin (needs `stdin_open=True`); `eof` closes it after."""
        await self._post(m.EXEC_STDIN, core.stdin_body(data, eof))

    async def close_stdin(self) -> None:
        """Close the command's stdin."""
        await self.send_stdin(eof=True)

    async def signal(self, signal: Union[int, str]) -> None:
        """Send a signal (number or name such as `"TERM"`) to the command's process group."""
        await self._post(m.EXEC_SIGNAL, m.SignalBody(signal=signal).to_dict())

    async def resize(self, rows: int, cols: int) -> None:
        """Resize the command's terminal (with `tty=True`)."""
        await self._post(m.EXEC_RESIZE, m.TerminalSize(rows=rows, cols=cols).to_dict())

    async def close(self) -> None:
        """Drop the connection (ending the command if it still runs)."""
        await self._resp.aclose()

    async def __aenter__(self) -> AsyncExecStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
