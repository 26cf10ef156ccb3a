"""Which socket the SDK talks to, and the fallback directory's safety check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airlock import DaemonUnavailable, _config
from airlock._config import Connection, default_socket


def test_default_socket_follows_the_daemons_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRLOCK_SOCKET", "/somewhere/a.sock")
    assert default_socket() == "/somewhere/a.sock"
    monkeypatch.delenv("AIRLOCK_SOCKET")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1234")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_socket() == "/run/airlock/airlock.sock"
    monkeypatch.setattr(os, "geteuid", lambda: 1234)
    assert default_socket() == "/run/user/1234/airlock.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setattr(os, "getuid", lambda: 1234)
    assert default_socket() == "/tmp/airlock-1234/airlock.sock"


def test_explicit_arguments_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRLOCK_SOCKET", "/env.sock")
    assert Connection.resolve().socket == "/env.sock"
    assert Connection.resolve("/arg.sock").socket == "/arg.sock"
    tcp = Connection.resolve(base_url="http://127.0.0.1:9/", token="t")
    assert (tcp.socket, tcp.base_url) == (None, "http://127.0.0.1:9")
    assert tcp.headers("ua")["Authorization"] == "Bearer t"
    with pytest.raises(ValueError):
        Connection.resolve("/a.sock", base_url="http://x")


def test_an_unsafe_fallback_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fallback = tmp_path / "airlock-1234"
    monkeypatch.setattr(_config, "fallback_dir", lambda: str(fallback))
    sock = str(fallback / "airlock.sock")
    Connection.resolve(sock)  # missing: fine, nothing listens there
    fallback.mkdir(mode=0o700)
    fallback.chmod(0o755)
    with pytest.raises(DaemonUnavailable) as e:
        Connection.resolve(sock)
    assert "has mode 0755, expected 0700" in e.value.message
    fallback.chmod(0o700)
    Connection.resolve(sock)
    fallback.rmdir()
    fallback.symlink_to(tmp_path)
    with pytest.raises(DaemonUnavailable) as e:
        Connection.resolve(sock)
    assert "is a symbolic link" in e.value.message
    # Elsewhere the directory is the user's own choice.
    other = tmp_path / "other"
    other.mkdir(mode=0o777)
    assert Connection.resolve(str(other / "a.sock")).socket == str(other / "a.sock")
