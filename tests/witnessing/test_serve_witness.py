"""`graven serve --witness URL`: checkpoints of events ingested over HTTP reach a real witness."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.server.test_server_cli import EXE, graven


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_for(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            if process.poll() is not None:
                raise AssertionError(f"the server stopped: {process.communicate()[1]}") from None
            assert time.monotonic() < deadline, f"no answer from {url}"
            time.sleep(0.1)


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    return err


@pytest.mark.slow
@pytest.mark.parametrize("how", ["serve-option", "global-option"])
def test_serve_pushes_checkpoints_to_a_witness(tmp_path: Path, how: str) -> None:
    """Events ingested into `graven serve` are cosigned by the witness, and `verify --witness` holds the log to it."""
    assert 0 == graven(tmp_path, "init").code
    log_key = graven(tmp_path, "key").out.strip()
    witness_key = graven(tmp_path, "witness", "key", "--out", "w.key", "--name", "witness.test/w1").out.strip()
    writer = graven(tmp_path, "keys", "create", "--role", "writer", "--name", "w").out.strip()
    witness_port, port = _free_port(), _free_port()
    witness_url = f"http://127.0.0.1:{witness_port}"
    witness = subprocess.Popen([EXE, "witness", "serve", "--key", "w.key", "--state", "wstate", "--log", log_key,
                                "--port", str(witness_port)], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    option = ["serve", "--witness", witness_url] if how == "serve-option" else ["--witness", witness_url, "serve"]
    server = subprocess.Popen([EXE, *option, "--port", str(port)], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _wait_for(f"{witness_url}/logs", witness)
        _wait_for(f"http://127.0.0.1:{port}/api/v1/openapi.json", server)
        ui = httpx.get(f"http://127.0.0.1:{port}/console", follow_redirects=False)
        assert (303, "/login?next=/console") == (ui.status_code, ui.headers["location"])
        auth = {"Authorization": f"Bearer {writer}"}
        for n in range(3):
            batch = [{"action": "file.delete", "actor": f"u-{n}", "targets": [{"type": "file", "id": f"f-{n}-{k}"}]}
                     for k in range(2)]  # fmt: skip
            sent = httpx.post(f"http://127.0.0.1:{port}/api/v1/events", headers=auth, json=batch)
            assert 201 == sent.status_code, sent.text
            time.sleep(0.3)
        size = 6 + 1  # the events, and the creation of the key
        deadline = time.monotonic() + 30
        cosigned = 0
        while cosigned < size:
            assert time.monotonic() < deadline, f"the witness cosigned size {cosigned}, not {size}"
            time.sleep(0.2)
            logs = orjson.loads(httpx.get(f"{witness_url}/logs").content)["logs"]
            cosigned = max([entry["size"] for entry in logs], default=0)
        assert witness_key == orjson.loads(httpx.get(f"{witness_url}/logs").content)["witness"]
    finally:
        server_err = _stop(server)
    try:
        verified = graven(tmp_path, "verify", "--witness", witness_url, "--witness-key", witness_key)
    finally:
        _stop(witness)
    assert "Traceback" not in server_err
    assert f"pushing checkpoints to {witness_url}" in server_err
    assert 0 == verified.code, verified.out + verified.err
    assert "witnessed" in verified.out + verified.err


def test_serve_refuses_a_bad_witness_url(tmp_path: Path) -> None:
    """A witness URL that is not http(s) is refused in one line, before anything is served."""
    graven(tmp_path, "init")
    done = graven(tmp_path, "serve", "--witness", "ftp://witness.example/", "--port", str(_free_port()))
    assert 2 == done.code
    assert 1 == len(done.err.strip().splitlines())
    assert "--witness" in done.err
    assert "ftp://witness.example/" in done.err
