"""`graven keys`, `graven users` and `graven serve` through the real CLI and a real socket."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

EXE = Path(sys.executable).with_name("graven")


@dataclass
class Run:
    code: int
    out: str
    err: str


def graven(cwd: Path, *args: str, stdin: str | None = None) -> Run:
    done = subprocess.run([EXE, *args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120,
                          check=False, env={**os.environ, "GRAVEN_ACTOR": "user:ops-1"})  # fmt: skip
    return Run(done.returncode, done.stdout, done.stderr)


class TestKeysAndUsers:
    def test_key_lifecycle(self, tmp_path: Path) -> None:
        """A key is printed once, listed without its secret, revoked by name; all of it recorded."""
        assert 0 == graven(tmp_path, "init").code
        made = graven(tmp_path, "keys", "create", "--role", "writer", "--name", "billing-service")
        assert 0 == made.code, made.err
        key = made.out.strip()
        assert key.startswith("graven_")
        assert "shown only this once" in made.err
        secret = tmp_path / ".graven" / "server.secret"
        assert 0o600 == stat.S_IMODE(secret.stat().st_mode)
        listed = graven(tmp_path, "keys", "list", "--json")
        rows = [orjson.loads(line) for line in listed.out.splitlines()]
        assert [("billing-service", "writer", "user:ops-1", None)] == [
            (r["name"], r["role"], r["created_by"], r["revoked_at"]) for r in rows
        ]
        assert key not in listed.out
        assert 0 == graven(tmp_path, "keys", "revoke", "billing-service").code
        again = graven(tmp_path, "keys", "revoke", "billing-service")
        assert (2, 1) == (again.code, len(again.err.strip().splitlines()))
        assert "no active API key" in again.err
        log = [orjson.loads(line) for line in graven(tmp_path, "log", "--json").out.splitlines()]
        assert [("apikey.create", "ops-1", "cli"), ("apikey.revoke", "ops-1", "cli")] == [
            (e["action"], e["actor"]["id"], e["source"]) for e in log
        ]

    def test_bad_role_and_name(self, tmp_path: Path) -> None:
        graven(tmp_path, "init")
        bad_role = graven(tmp_path, "keys", "create", "--role", "boss", "--name", "x")
        assert 2 == bad_role.code
        bad_name = graven(tmp_path, "keys", "create", "--role", "reader", "--name", "has space")
        assert (2, "graven: name: must be 1 to 100") == (bad_name.code, bad_name.err[:30])

    def test_users(self, tmp_path: Path) -> None:
        """Users get a password from stdin; too short is refused; disabling is recorded."""
        graven(tmp_path, "init")
        short = graven(tmp_path, "users", "add", "alice", "--role", "auditor", "--password-stdin", stdin="short\n")
        assert 2 == short.code
        assert "password: must be at least 8 characters" in short.err
        added = graven(tmp_path, "users", "add", "alice", "--role", "auditor", "--password-stdin",
                       stdin="correct horse\n")  # fmt: skip
        assert 0 == added.code, added.err
        assert "alice" in graven(tmp_path, "users", "list").out
        assert 0 == graven(tmp_path, "users", "passwd", "alice", "--password-stdin", stdin="battery staple\n").code
        assert 0 == graven(tmp_path, "users", "disable", "alice").code
        rows = [orjson.loads(line) for line in graven(tmp_path, "users", "list", "--json").out.splitlines()]
        assert rows[0]["disabled_at"] is not None
        log = [orjson.loads(line) for line in graven(tmp_path, "log", "--json").out.splitlines()]
        assert ["user.create", "user.password.change", "user.disable"] == [e["action"] for e in log]
        assert [{"field": "password", "redacted": True}] == log[0]["changes"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.slow
def test_serve_on_a_real_socket(tmp_path: Path) -> None:
    """`graven serve` answers over TCP: ingest with a CLI-made key, read back, tail, then stops on SIGINT."""
    graven(tmp_path, "init")
    writer = graven(tmp_path, "keys", "create", "--role", "writer", "--name", "w").out.strip()
    reader = graven(tmp_path, "keys", "create", "--role", "reader", "--name", "r").out.strip()
    port = _free_port()
    server = subprocess.Popen([EXE, "serve", "--port", str(port)], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/api/v1/openapi.json", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, server.stderr.read() if server.poll() is not None else "no answer"
                time.sleep(0.1)
        sent = httpx.post(f"{base}/api/v1/events", json=[{"action": "file.delete", "actor": "u-1"}] * 1,
                          headers={"Authorization": f"Bearer {writer}"})  # fmt: skip
        assert 201 == sent.status_code, sent.text
        index = sent.json()["indices"][0]
        auth = {"Authorization": f"Bearer {reader}"}
        with httpx.stream("GET", f"{base}/api/v1/tail", params={"from": index, "limit": 1}, headers=auth) as tail:
            body = tail.read().decode()
        assert f"id: {index}\nevent: entry\n" in body
        page = httpx.get(f"{base}/api/v1/entries", params={"action": "file.delete"}, headers=auth).json()
        assert ["file.delete"] == [e["action"] for e in page["entries"]]
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=30)
    assert "Traceback" not in err
    assert f"serving sqlite:///.graven/trail.db at http://127.0.0.1:{port}/api/v1" in err
    assert 0 == graven(tmp_path, "verify").code
