"""Fixtures for the SDK suite, run against a real daemon booting real sandboxes.

The Rust test `crates/airlock/tests/suite/sdk.rs` starts the daemon and sets:
`AIRLOCK_SOCKET` (the daemon's socket; the SDK's default honours it), `AIRLOCK_TEST_TCP_URL`
and `AIRLOCK_TEST_TOKEN` (its TCP listener), and optionally `AIRLOCK_TEST_IMAGE` (default
`tiny`). Run by hand against your own daemon with the same variables.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

from airlock import Client, Sandbox

IMAGE = os.environ.get("AIRLOCK_TEST_IMAGE", "tiny")
MEMORY_MIB = 256


def required_env(name: str) -> str:
    """An environment variable the suite needs; fails (never skips) when it is missing."""
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run the suite with `cargo test -p airlock --test all sdk`")
    return value


def vm_processes(sandbox_id: str) -> List[str]:
    """`pid: cmdline` of every process whose command line names the sandbox (its QEMU, ...)."""
    found = []
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or entry == me:
            continue
        try:
            raw = Path("/proc", entry, "cmdline").read_bytes()
        except OSError:
            continue
        cmdline = raw.replace(b"\0", b" ").decode("utf-8", errors="replace")
        if sandbox_id in cmdline:
            found.append(f"{entry}: {cmdline}")
    return found


def wait_until(cond: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Polls `cond` until it holds or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def assert_gone(client: Client, sandbox_id: str) -> None:
    """The daemon forgot the sandbox and no process of it is left."""
    assert all(s.id != sandbox_id for s in client.list())
    assert wait_until(lambda: not vm_processes(sandbox_id)), vm_processes(sandbox_id)


@pytest.fixture
def client() -> Iterator[Client]:
    with Client() as c:
        yield c


@pytest.fixture(scope="module")
def shared_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ws")


@pytest.fixture(scope="module")
def sandbox(shared_workspace: Path) -> Iterator[Sandbox]:
    """One sandbox shared by a module's tests (each boot costs seconds under TCG)."""
    with Sandbox.create(
        profile="default", workspace=shared_workspace, image=IMAGE, memory_mib=MEMORY_MIB
    ) as sb:
        yield sb
    with Client() as c:
        assert_gone(c, sb.id)
