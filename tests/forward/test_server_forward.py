"""Forwarding inside ``graven serve --forward NAME`` and ``GET /api/v1/forwarders`` (admin only)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import orjson
import pytest

from graven.forward import config as fc
from tests.forward.helpers import fill
from tests.forward.test_cli_forward import GRAVEN, run
from tests.server.server_harness import Served


def test_forwarders_route_is_for_admins(served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "graven.toml"
    fc.write_sink(path, fc.parse_sink("siem", {"sink": "jsonl", "path": str(tmp_path / "out")}), "siem")
    monkeypatch.setenv(fc.CONFIG_ENV, str(path))
    fill(served.trail, 3)
    for role in ("reader", "auditor", "writer"):
        assert 403 == served.client.get("/api/v1/forwarders", headers=served.auth(role)).status_code
    assert 401 == served.client.get("/api/v1/forwarders").status_code
    answer = served.client.get("/api/v1/forwarders", headers=served.auth("admin"))
    assert 200 == answer.status_code
    (row,) = answer.json()
    assert ("siem", "jsonl", 0) == (row["name"], row["sink"], row["position"])
    assert row["lag_entries"] == served.trail.size


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.slow
def test_serve_forward_delivers_what_the_service_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GRAVEN_DB", "GRAVEN_SIGNING_KEY", "GRAVEN_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    run(tmp_path, "init")
    run(tmp_path, "forward", "add", "siem", "jsonl", "path=out")
    key = run(tmp_path, "keys", "create", "--role", "admin", "--name", "ops").stdout.strip()
    writer = run(tmp_path, "keys", "create", "--role", "writer", "--name", "app").stdout.strip()
    port = _free_port()
    server = subprocess.Popen([GRAVEN, "serve", "--port", str(port), "--forward", "siem"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())  # fmt: skip
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/openapi.json", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        events = [{"action": "invoice.pay", "actor": {"type": "user", "id": f"u-{i}"}} for i in range(20)]
        answer = httpx.post(f"{base}/events", json=events, headers={"Authorization": f"Bearer {writer}"})
        assert answer.status_code in (200, 201), answer.text
        rows: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            rows = httpx.get(f"{base}/forwarders", headers={"Authorization": f"Bearer {key}"}).json()
            if rows and rows[0]["lag_entries"] == 0:
                break
            time.sleep(0.1)
        assert rows
        assert 0 == rows[0]["lag_entries"], rows
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    lines = (tmp_path / "out" / "graven.jsonl").read_bytes().splitlines()
    actions = [orjson.loads(line).get("action") for line in lines]
    assert 20 == actions.count("invoice.pay")
    verifier = run(tmp_path, "key").stdout.strip()
    assert "OK" in run(tmp_path, "receive", "verify", "out", "--key", verifier).stdout
