"""The asyncio client: the same calls, awaited, against the real daemon."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from airlock import (
    AsyncClient,
    AsyncSandbox,
    AuditRecord,
    Exit,
    NotFound,
    Output,
    PolicyDenied,
    SandboxStatus,
)
from conftest import IMAGE, MEMORY_MIB, vm_processes, wait_until


@pytest.mark.asyncio
async def test_async_client_does_what_the_sync_one_does(tmp_path: Path) -> None:
    (tmp_path / ".git" / "hooks").mkdir(parents=True)
    async with AsyncSandbox.create(
        profile="default", workspace=tmp_path, image=IMAGE, memory_mib=MEMORY_MIB
    ) as sb:
        sandbox_id = sb.id
        assert sb.info.status is SandboxStatus.RUNNING and vm_processes(sandbox_id)

        r = await sb.exec(["sh", "-c", "echo hi"])
        assert r.stdout == "hi\n" and r.exit_code == 0

        seen = []
        async for ev in await sb.exec_stream(["sh", "-c", "echo a; echo b >&2; exit 4"]):
            seen.append(ev)
        assert isinstance(seen[-1], Exit) and seen[-1].exit_code == 4
        out = {e.stream: e.data for e in seen if isinstance(e, Output)}
        assert out == {"stdout": b"a\n", "stderr": b"b\n"}

        # Execs run concurrently in one sandbox.
        results = await asyncio.gather(
            *(sb.exec(["sh", "-c", f"sleep 1; echo {i}"]) for i in range(3))
        )
        assert [x.stdout for x in results] == ["0\n", "1\n", "2\n"]

        stream = await sb.exec_stream(["cat"], stdin_open=True)
        async with stream:
            await stream.send_stdin(b"ping\n", eof=True)
            result = await stream.wait()
        assert result.stdout == "ping\n" and result.exit_code == 0

        await sb.files.write("/workspace/a.txt", b"x")
        assert await sb.files.read("/workspace/a.txt") == b"x"
        assert (tmp_path / "a.txt").read_bytes() == b"x"
        assert [f.path for f in await sb.files.list("/workspace")] == [".git", "a.txt"]

        with pytest.raises(PolicyDenied) as e:
            await sb.files.write("/workspace/.git/hooks/post-checkout", b"#!/bin/sh\n")
        assert e.value.status == 403 and "post-checkout" in e.value.message

        records = await sb.events()
        assert all(isinstance(r, AuditRecord) for r in records)
        denied = [r for r in records if r.decision == "deny" and r.fs is not None]
        assert [(r.kind, r.fs.path, r.reason) for r in denied if r.fs] == [
            ("fs.create", ".git/hooks/post-checkout", "protected_path")
        ], records
        stats = await sb.stats()
        assert stats["sandbox"] == sandbox_id

        # Following the log: it ends with the sandbox.
        async def follow() -> list:
            return [r.kind async for r in sb.events_stream()]

        task = asyncio.create_task(follow())
        await asyncio.sleep(0.5)
        assert not task.done()
        stopped = await sb.stop()
        assert stopped.status is SandboxStatus.STOPPED and stopped.end_reason
        kinds = await asyncio.wait_for(task, 30)
        assert kinds[0] == "sandbox.start" and kinds[-1] == "sandbox.end", kinds

    async with AsyncClient() as client:
        with pytest.raises(NotFound) as nf:
            await client.get(sandbox_id)
        assert sandbox_id in nf.value.message
        assert all(s.id != sandbox_id for s in await client.list())
    assert wait_until(lambda: not vm_processes(sandbox_id)), vm_processes(sandbox_id)
