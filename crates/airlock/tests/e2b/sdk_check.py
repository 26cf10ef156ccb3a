"""The official `e2b` SDK (pinned `e2b>=2,<3` in scripts/test-requirements.txt), unmodified,
against `airlock daemon --e2b`. Run by `crates/airlock/tests/suite/e2b.rs`, which sets
E2B_API_KEY, E2B_API_URL and E2B_SANDBOX_URL, a policy that denies reading `.env`, and a
workspace at /workspace holding one. Prints one JSON line per sandbox it made
(`{"sandbox": ID, "client": "sync"|"async"}`) for the Rust side to check the audit logs; exits
non-zero (with the traceback) on any failed expectation.
"""

import asyncio
import io
import importlib.metadata
import json
import os
import sys
import time

from e2b import AsyncSandbox, Sandbox
from e2b.exceptions import (
    AuthenticationException,
    FileNotFoundException,
    NotFoundException,
    SandboxException,
)
from e2b.sandbox.commands.command_handle import CommandExitException


def vm_processes(sandbox_id):
    """Processes whose command line names the sandbox (its QEMU, gateways...)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or entry == str(os.getpid()):
            continue
        try:
            raw = open(f"/proc/{entry}/cmdline", "rb").read()
        except OSError:
            continue
        line = raw.replace(b"\0", b" ").decode("utf-8", "replace")
        if sandbox_id in line:
            found.append(f"{entry}: {line}")
    return found


def assert_gone(sandbox_id):
    deadline = time.monotonic() + 20
    while vm_processes(sandbox_id):
        assert time.monotonic() < deadline, vm_processes(sandbox_id)
        time.sleep(0.1)


def expect(exc, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except exc as e:
        return e
    raise AssertionError(f"{fn.__name__}{args} did not raise {exc.__name__}")


def sync_client():
    sb = Sandbox.create(timeout=600)
    print(json.dumps({"sandbox": sb.sandbox_id, "client": "sync"}), flush=True)
    assert sb.is_running()

    r = sb.commands.run("echo hi")
    assert r.stdout == "hi\n", r
    assert r.exit_code == 0 and r.stderr == "", r

    r = sb.commands.run("echo out; echo err >&2; printf '%s' \"$GREETING\"", envs={"GREETING": "hey"})
    assert r.stdout == "out\nhey" and r.stderr == "err\n", r

    e = expect(CommandExitException, sb.commands.run, "echo before; exit 3")
    assert e.exit_code == 3 and e.stdout == "before\n", e

    # A background command killed through its handle (SendSignal).
    h = sb.commands.run("sleep 600", background=True)
    assert h.kill()
    e = expect(CommandExitException, h.wait)
    assert e.exit_code == 137, e  # 128 + SIGKILL
    assert not sb.commands.kill(h.pid), "the command is gone"

    info = sb.files.write("/workspace/hello.txt", "hello from e2b\n")
    assert info.path == "/workspace/hello.txt" and info.name == "hello.txt", info
    assert sb.files.read("/workspace/hello.txt") == "hello from e2b\n"
    data = bytes(range(256)) * 4
    sb.files.write("/workspace/bin.dat", data)
    assert bytes(sb.files.read("/workspace/bin.dat", format="bytes")) == data
    assert sb.commands.run("cat /workspace/hello.txt").stdout == "hello from e2b\n"
    # Several files in one multipart body (each part's filename is its path)...
    infos = sb.files.write_files(
        [{"path": "/workspace/m1.txt", "data": "one"}, {"path": "/workspace/m2.txt", "data": b"two"}]
    )
    assert [i.path for i in infos] == ["/workspace/m1.txt", "/workspace/m2.txt"], infos
    assert sb.commands.run("cat /workspace/m1.txt /workspace/m2.txt").stdout == "onetwo"
    # ...and a file-like upload, which the SDK sends as raw application/octet-stream.
    sb.files.write("/workspace/raw.txt", io.BytesIO(b"raw bytes"))
    assert sb.files.read("/workspace/raw.txt") == "raw bytes"
    # Parent directories are not created (docs/e2b.md).
    expect(NotFoundException, sb.files.write, "/workspace/no/such/dir.txt", "x")

    expect(FileNotFoundException, sb.files.read, "/workspace/missing.txt")
    denied = expect(SandboxException, sb.files.read, "/workspace/.env")
    assert "403" in str(denied), denied
    r = sb.commands.run("cat /workspace/.env 2>&1; echo rc=$?")
    assert "SECRET" not in r.stdout and "rc=1" in r.stdout, r

    raw_http_errors(sb)

    sb.kill()
    assert_gone(sb.sandbox_id)
    assert not Sandbox.kill(sb.sandbox_id), "a second kill finds no sandbox"


def raw_http_errors(sb):
    """Precise errors in E2B's shape for what the SDK would never send."""
    import httpx

    base = os.environ["E2B_API_URL"]
    key = {"X-API-Key": os.environ["E2B_API_KEY"]}
    ok = {"E2b-Sandbox-Id": sb.sandbox_id, "X-Access-Token": sb._envd_access_token}

    def check(r, status, words):
        body = r.json()
        assert r.status_code == status and body["code"] == status, (r, body)
        assert words in body["message"], body

    with httpx.Client(base_url=base) as c:
        check(c.get("/files", params={"path": "/workspace/hello.txt"},
                    headers={"E2b-Sandbox-Id": sb.sandbox_id}), 401, "missing X-Access-Token")
        check(c.get("/files", params={"path": "/workspace/hello.txt"},
                    headers={**ok, "X-Access-Token": "nope"}), 401, "invalid X-Access-Token")
        check(c.get("/files", params={"path": "/workspace/hello.txt"},
                    headers={**ok, "E2b-Sandbox-Id": "nosuchsandbox"}), 404, "not found")
        check(c.get("/files", params={"path": "/workspace/hello.txt"}), 404, "missing E2b-Sandbox-Id")
        check(c.get("/files", params={"path": "relative"}, headers=ok), 400, "absolute path")
        check(c.post("/process.Process/Start", content=b"\x00\x00\x00", headers={
            **ok, "Content-Type": "application/connect+json"}), 400, "bad Connect frame")
        check(c.post("/process.Process/Start", content=b"\x00\xff\xff\xff\xff", headers={
            **ok, "Content-Type": "application/connect+json"}), 400, "larger than the limit")
        check(c.post("/process.Process/Start", content=b"\x00\x00\x00\x00\x01{", headers={
            **ok, "Content-Type": "application/connect+json"}), 400, "invalid StartRequest JSON")
        check(c.post("/v2/sandboxes", content=b"{", headers=key), 400, "invalid JSON")
        check(c.post("/v2/sandboxes", json={"templateID": "base"}), 401, "missing X-API-Key")
        check(c.delete("/sandboxes/nosuchsandbox", headers=key), 404, "not found")
        r = c.post("/process.Process/List", json={}, headers=ok)
        assert r.status_code == 501 and r.json()["code"] == "unimplemented", r.text
        assert c.get("/health").status_code == 204


def bad_credentials():
    e = expect(AuthenticationException, Sandbox.create, api_key="wrong-key-0123456789abcdef")
    assert "invalid API key" in str(e), e


async def async_client():
    sb = await AsyncSandbox.create(timeout=600)
    print(json.dumps({"sandbox": sb.sandbox_id, "client": "async"}), flush=True)
    r = await sb.commands.run("echo hi")
    assert r.stdout == "hi\n", r
    try:
        await sb.commands.run("exit 5")
    except CommandExitException as e:
        assert e.exit_code == 5, e
    else:
        raise AssertionError("exit 5 did not raise")
    await sb.files.write("/workspace/async.txt", "async\n")
    assert await sb.files.read("/workspace/async.txt") == "async\n"
    try:
        await sb.files.read("/workspace/.env")
    except SandboxException as e:
        assert "403" in str(e), e
    else:
        raise AssertionError("reading .env did not raise")
    await sb.kill()
    assert_gone(sb.sandbox_id)


def default_workspace():
    """Without --e2b-workspace each sandbox gets a fresh directory, removed by kill()."""
    import httpx

    sb = Sandbox.create()
    print(json.dumps({"sandbox": sb.sandbox_id, "client": "sync"}), flush=True)
    uds = httpx.HTTPTransport(uds=os.environ["AIRLOCK_SOCKET"])
    with httpx.Client(transport=uds, base_url="http://airlock") as c:
        info = c.get(f"/v1/sandboxes/{sb.sandbox_id}").json()
    ws = info["workspace"]
    assert os.path.basename(ws).startswith("airlock-e2b-"), info
    assert info["labels"] == {"e2b.template": "base"}, info
    sb.files.write("/workspace/made.txt", "fresh\n")
    assert open(os.path.join(ws, "made.txt")).read() == "fresh\n"
    assert sb.commands.run("ls -A /workspace").stdout == "made.txt\n"
    sb.kill()
    assert_gone(sb.sandbox_id)
    assert not os.path.exists(ws), ws


def main():
    version = importlib.metadata.version("e2b")
    assert version.split(".")[0] == "2", f"the test pins e2b>=2,<3, found {version}"
    print(json.dumps({"e2b": version}), flush=True)
    if sys.argv[1:] == ["default-workspace"]:
        default_workspace()
    else:
        bad_credentials()
        sync_client()
        asyncio.run(async_client())
    print(json.dumps({"ok": True}), flush=True)


if __name__ == "__main__":
    main()
    # Every check passed. Skip the interpreter's finalization: the SDK's HTTP client (pyqwest)
    # keeps tokio worker threads that may still call into Python (a socket send waking an
    # asyncio loop) while Py_FinalizeEx runs, and CPython 3.11 then ends that thread with
    # pthread_exit, which aborts the process (SIGABRT after "ok"; seen in about half the runs).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
