"""The blocking client against a real daemon: the issue's example, exec, streams, files,
policy denials, events, errors, TCP with a token."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from airlock import (
    AirlockError,
    AuditRecord,
    BadRequest,
    Client,
    Conflict,
    DaemonUnavailable,
    ExecResult,
    Exit,
    NotFound,
    Output,
    PolicyDenied,
    Sandbox,
    SandboxStatus,
    Unauthorized,
)
from conftest import (
    IMAGE,
    MEMORY_MIB,
    assert_gone,
    required_env,
    vm_processes,
    wait_until,
)


def test_the_example_from_the_issue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: Client
) -> None:
    monkeypatch.chdir(tmp_path)  # workspace="." is the current directory, made absolute
    with Sandbox.create(profile="default", workspace=".", image=IMAGE) as sb:
        assert sb.info.status is SandboxStatus.RUNNING
        assert sb.info.workspace == str(tmp_path)
        assert vm_processes(sb.id), "the sandbox's VM should be running"

        r = sb.exec(["sh", "-c", "echo hi"])
        assert r.stdout == "hi\n" and r.exit_code == 0

        events = list(sb.exec_stream(["sh", "-c", "echo out; echo err >&2; exit 3"]))
        *chunks, last = events
        assert all(isinstance(c, Output) for c in chunks), events
        assert isinstance(last, Exit) and last.exit_code == 3 and last.exit.code == 3
        out = b"".join(c.data for c in chunks if isinstance(c, Output) and c.stream == "stdout")
        err = b"".join(c.data for c in chunks if isinstance(c, Output) and c.stream == "stderr")
        assert (out, err) == (b"out\n", b"err\n")

        sb.files.write("/workspace/a.txt", b"x")
        assert sb.files.read("/workspace/a.txt") == b"x"
        assert (tmp_path / "a.txt").read_bytes() == b"x"  # the workspace is the host directory

        records = sb.events()
        assert records and all(isinstance(e, AuditRecord) for e in records)
        assert [e.seq for e in records] == list(range(1, len(records) + 1))
        assert all(e.sandbox == sb.id for e in records)
        assert all(b.prev == a.hash for a, b in zip(records, records[1:]))
        assert records[0].kind == "sandbox.start" and records[0].source == "host"
        # The fs gateway recorded the new file (host-observed, allowed by the workspace mount).
        created = [e for e in records if e.kind == "fs.create" and e.fs and e.fs.path == "a.txt"]
        assert created, [(e.kind, e.fs) for e in records]
        assert created[0].decision == "allow" and created[0].source == "host"
        assert created[0].fs and created[0].fs.mount == "/workspace"
        sandbox_id = sb.id
    # Leaving the block deleted the sandbox: the daemon forgot it and its VM is gone.
    with pytest.raises(NotFound) as e:
        client.get(sandbox_id)
    assert e.value.status == 404 and e.value.code == "not_found"
    assert sandbox_id in e.value.message
    assert_gone(client, sandbox_id)


def test_exec_passes_stdin_env_cwd_and_exit_status(sandbox: Sandbox) -> None:
    r = sandbox.exec(
        ["sh", "-c", 'cat; echo "$GREETING"; pwd; exit 7'],
        stdin="from stdin\n",
        env={"GREETING": "hello"},
        cwd="/tmp",
    )
    assert isinstance(r, ExecResult)
    assert (r.stdout, r.stderr, r.exit_code) == ("from stdin\nhello\n/tmp\n", "", 7)
    assert r.exec_id
    # Binary output comes through untouched.
    r = sandbox.exec(["printf", "\\000\\377\\n"])
    assert r.stdout_bytes == b"\x00\xff\n"
    r = sandbox.exec(["no-such-command"])
    assert r.exit_code == 127
    # The workspace mount is the default working directory.
    assert sandbox.exec(["pwd"]).stdout == "/workspace\n"


def test_exec_stream_drives_stdin_and_signals(sandbox: Sandbox) -> None:
    with sandbox.exec_stream(["cat"], stdin_open=True) as s:
        assert s.exec_id
        s.send_stdin(b"first line\n")
        first = next(s)
        assert isinstance(first, Output) and first.text == "first line\n"
        s.send_stdin("second\n", eof=True)
        rest = list(s)
    assert isinstance(rest[-1], Exit) and rest[-1].exit_code == 0
    assert b"".join(e.data for e in rest if isinstance(e, Output)) == b"second\n"
    assert s.exit is not None and s.exit.exit_code == 0

    with sandbox.exec_stream(["sh", "-c", "echo ready; exec sleep 60"]) as s:
        ready = next(s)
        assert isinstance(ready, Output) and ready.text == "ready\n"
        s.signal("TERM")
        result = s.wait()
    assert result.exit.signal == 15 and result.exit_code == 143

    # Closing stdin of an exec that already ended is a conflict or not found, with a message.
    with pytest.raises((Conflict, NotFound)) as e:
        s.close_stdin()
    assert e.value.message


def test_files_write_read_stat_list(sandbox: Sandbox, shared_workspace: Path) -> None:
    written = sandbox.files.write("/workspace/dir-test.txt", "héllo\n", mode=0o600)
    assert written.path == "/workspace/dir-test.txt" and written.size == len("héllo\n".encode())
    assert sandbox.files.read_text("/workspace/dir-test.txt") == "héllo\n"
    st = sandbox.files.stat("/workspace/dir-test.txt")
    assert (st.type, st.size, st.mode) == ("file", 7, "600")
    names = [f.path for f in sandbox.files.list("/workspace")]
    assert "dir-test.txt" in names and names == sorted(names)
    assert (shared_workspace / "dir-test.txt").read_text() == "héllo\n"
    # The guest's own filesystem is reachable too.
    sandbox.files.write("/tmp/big.bin", bytes(range(256)) * 4096)
    assert sandbox.files.read("/tmp/big.bin") == bytes(range(256)) * 4096
    assert sandbox.files.exists("/tmp/big.bin")
    assert not sandbox.files.exists("/tmp/missing")
    with pytest.raises(NotFound) as e:
        sandbox.files.read("/tmp/missing")
    assert "/tmp/missing" in e.value.message and e.value.status == 404


def test_a_policy_denial_raises_with_the_daemons_message(tmp_path: Path) -> None:
    (tmp_path / ".git" / "hooks").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("do not read\n")
    policy = 'extends = "default"\n[filesystem]\ndeny_read = ["secret.txt"]\n'
    with Sandbox.create(policy=policy, workspace=tmp_path, memory_mib=MEMORY_MIB) as sb:
        # A protected path: hooks would run on the host later.
        with pytest.raises(PolicyDenied) as e:
            sb.files.write("/workspace/.git/hooks/pre-commit", b"#!/bin/sh\n")
        assert e.value.status == 403 and e.value.code == "forbidden"
        assert "/workspace/.git/hooks/pre-commit" in e.value.message, e.value.message
        assert "refused" in e.value.message, e.value.message
        assert not (tmp_path / ".git" / "hooks" / "pre-commit").exists()
        # A deny_read rule of the policy given as text.
        with pytest.raises(PolicyDenied) as e:
            sb.files.read("/workspace/secret.txt")
        assert "/workspace/secret.txt" in e.value.message, e.value.message
        # Both decisions are in the audit log, attributed to their rules.
        denied = {
            r.fs.path: r
            for r in sb.events()
            if r.decision == "deny" and r.fs is not None and r.source == "host"
        }
        assert ".git/hooks/pre-commit" in denied, denied
        assert denied[".git/hooks/pre-commit"].reason == "protected_path"
        assert "secret.txt" in denied, denied
        assert denied["secret.txt"].rule and "deny_read" in denied["secret.txt"].rule


def test_bad_input_raises_typed_errors_with_the_daemons_message(
    client: Client, sandbox: Sandbox
) -> None:
    with pytest.raises(NotFound) as e:
        Sandbox.connect("0123456789ab")
    assert e.value.status == 404 and "0123456789ab" in e.value.message
    with pytest.raises(NotFound):
        client.get("no/such id")  # path characters are escaped, not routed
    with pytest.raises(BadRequest) as b:
        sandbox.exec([""])
    assert b.value.status == 400 and "argv" in b.value.message
    with pytest.raises(BadRequest) as b:
        sandbox.exec(["true"], cwd="relative")
    assert "cwd" in b.value.message
    with pytest.raises(BadRequest) as b:
        sandbox.files.read("relative/path")
    assert "path" in b.value.message
    with pytest.raises(BadRequest) as b:
        client.create(profile="no-such-profile", workspace="/tmp")
    assert "no-such-profile" in b.value.message, b.value.message
    with pytest.raises(TypeError):
        sandbox.exec("echo hi")  # type: ignore[arg-type]
    # Reattaching by id gives the same sandbox.
    again = Sandbox.connect(sandbox.id)
    assert again.id == sandbox.id and again.exec(["true"]).exit_code == 0
    again.client.close()


def test_a_read_timeout_abandons_the_exec_and_ends_the_command(sandbox: Sandbox) -> None:
    with Client(timeout=0.5) as impatient:
        sb = impatient.get(sandbox.id)
        with pytest.raises(AirlockError) as e:
            sb.exec(["sh", "-c", "sleep 30"])
        assert not isinstance(e.value, DaemonUnavailable)
        assert "timeout=0.5" in e.value.message, e.value.message
    # Dropping the connection ended the command in the guest.
    assert wait_until(lambda: sandbox.refresh().execs_running == 0), sandbox.info


def test_events_stream_follows_until_the_sandbox_ends(tmp_path: Path, client: Client) -> None:
    sb = client.create(profile="default", workspace=tmp_path, memory_mib=MEMORY_MIB)
    try:
        kinds = []
        stream = sb.events_stream()
        first = next(stream)
        kinds.append(first.kind)
        stopper = threading.Timer(0.5, sb.stop)
        stopper.start()
        kinds += [r.kind for r in stream]  # ends at sandbox.end
        stopper.join()
        assert kinds[0] == "sandbox.start" and kinds[-1] == "sandbox.end", kinds
        assert sb.refresh().status is SandboxStatus.STOPPED
        with pytest.raises(Conflict) as e:
            sb.exec(["true"])
        assert e.value.status == 409 and "stopped" in e.value.message
    finally:
        sb.delete()
    assert_gone(client, sb.id)


def test_tcp_with_a_token(tmp_path: Path) -> None:
    url = required_env("AIRLOCK_TEST_TCP_URL")
    token = required_env("AIRLOCK_TEST_TOKEN")
    with pytest.raises(Unauthorized) as e:
        Client(base_url=url).list()
    assert e.value.status == 401 and "Bearer" in e.value.message
    with pytest.raises(Unauthorized):
        Client(base_url=url, token="wrong-token-0123456789").list()
    with Sandbox.create(
        base_url=url, token=token, workspace=tmp_path, memory_mib=MEMORY_MIB
    ) as sb:
        assert sb.client.connection.socket is None
        assert sb.exec(["echo", "over tcp"]).stdout == "over tcp\n"
        with Client() as unix:
            assert sb.id in [s.id for s in unix.list()]  # one daemon, two listeners


def test_unreachable_daemon_is_daemon_unavailable(tmp_path: Path) -> None:
    with pytest.raises(DaemonUnavailable) as e:
        Client(tmp_path / "nothing.sock").list()
    assert str(tmp_path / "nothing.sock") in e.value.message and e.value.status is None
