"""`graven serve` on a PostgreSQL log whose database goes away: 503 JSON, and one log line per failure.

The shared test server is never stopped: the test makes its own database, serves it, cuts the
service's connections (``pg_terminate_backend``) and then drops the database under it.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from tests.pgserver import PG_URL, with_url
from tests.server.test_server_cli import EXE, _free_port


@pytest.fixture
def own_database() -> Iterator[tuple[psycopg.Connection[tuple[object, ...]], str]]:
    """A database of the test's own on the shared server (the admin connection and its name); dropped after."""
    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        pytest.skip(f"no PostgreSQL server: {str(exc).strip()}")
    name = f"graven_outage_{secrets.token_hex(5)}"
    admin.execute(sql.SQL("CREATE DATABASE {} ENCODING 'UTF8' TEMPLATE template0").format(sql.Identifier(name)))
    try:
        yield admin, name
    finally:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


@pytest.mark.slow
def test_lost_database_is_503_and_one_line_per_failure(
    tmp_path: Path, own_database: tuple[psycopg.Connection[tuple[object, ...]], str]
) -> None:
    admin, name = own_database
    env = {**os.environ, "GRAVEN_DB": with_url(PG_URL, db=name), "GRAVEN_ACTOR": "user:ops-1"}

    def graven(*args: str) -> str:
        done = subprocess.run([EXE, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                              check=True)  # fmt: skip
        return done.stdout

    graven("init")
    auth = {"Authorization": f"Bearer {graven('keys', 'create', '--role', 'reader', '--name', 'r').strip()}"}
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    errors = tmp_path / "serve.err"
    with errors.open("w") as sink:
        server = subprocess.Popen([EXE, "serve", "--port", str(port)], cwd=tmp_path, env=env,
                                  stdout=subprocess.DEVNULL, stderr=sink)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert 200 == httpx.get(f"{base}/api/v1/entries", headers=auth, timeout=5).status_code
                break
            except httpx.TransportError:
                assert server.poll() is None, errors.read_text()
                assert time.monotonic() < deadline, errors.read_text()
                time.sleep(0.1)
        terminated = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
                                   (name,)).fetchone()  # fmt: skip
        assert terminated is not None
        assert terminated[0] >= 1
        time.sleep(0.5)
        # The service reconnects after its connections were cut (this request may be the one that finds out).
        statuses = [httpx.get(f"{base}/api/v1/entries", headers=auth, timeout=10).status_code for _ in range(3)]
        assert 200 == statuses[-1], statuses
        assert set(statuses) <= {200, 503}, statuses
        with httpx.stream("GET", f"{base}/api/v1/tail", headers=auth, timeout=30) as tail:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            cut = tail.read()  # the stream ends when the tail can no longer read
        assert b"Traceback" not in cut
        time.sleep(1.5)  # several polls of the watcher fail meanwhile
        gone = httpx.get(f"{base}/api/v1/entries", headers=auth, timeout=10)
        assert (503, "application/json") == (gone.status_code, gone.headers["content-type"])
        assert name in gone.json()["message"]
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    log = errors.read_text()
    assert "Traceback" not in log, log
    assert 0 == server.returncode, log
    failures = [line for line in log.splitlines() if "could not read the log's size" in line]
    assert 1 <= len(failures) <= 3, log
    assert all(name in line and "does not exist" in line for line in failures[-1:]), log
    answered = [line for line in log.splitlines() if "answered 503" in line]
    # one text line (graven serve's default log format): time, level, logger, the message, the request id
    expected = f" graven.server graven: GET /api/v1/entries answered 503: {gone.json()['message']} request_id="
    assert expected in answered[-1], log
    assert not [line for line in log.splitlines() if line.startswith(" ")], log  # nothing but whole lines
