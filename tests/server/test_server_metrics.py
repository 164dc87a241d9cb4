"""GET /metrics (Prometheus text), the extended /readyz, and the service's JSON or text log lines."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from graven.server.logs import JsonFormatter, TextFormatter, configure
from graven.witnessing.pusher import Pusher
from tests.server.server_harness import SETUP, Factory, Served

EXE = Path(sys.executable).with_name("graven")


def scrape(served: Served, key: str, client: TestClient | None = None) -> dict[str, float]:
    """Every sample of a scrape, named with its labels (``name{label=value}``)."""
    response = (client or served.client).get("/metrics", headers={"Authorization": f"Bearer {key}"})
    assert 200 == response.status_code, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


def metrics_key(served: Served) -> str:
    return served.accounts.create_key("scraper", "metrics", by=SETUP)[1]


class TestMetricsAccess:
    def test_only_the_metrics_role_and_admins(self, served: Served) -> None:
        """Anonymous callers get 401, other roles 403; the metrics role and admins read the figures."""
        key = metrics_key(served)
        assert 401 == served.client.get("/metrics").status_code
        for role in ("writer", "reader", "auditor"):
            assert 403 == served.client.get("/metrics", headers=served.auth(role)).status_code
        assert 200 == served.client.get("/metrics", headers=served.auth("admin")).status_code
        assert "graven_log_entries" in scrape(served, key)

    def test_metrics_key_reads_nothing_else(self, served: Served) -> None:
        """A scraper's key cannot read, export or write entries."""
        headers = {"Authorization": f"Bearer {metrics_key(served)}"}
        assert 403 == served.client.get("/api/v1/entries", headers=headers).status_code
        assert 403 == served.client.post("/api/v1/events", json={"action": "a.b"}, headers=headers).status_code


class TestFigures:
    def test_ingest_figures(self, served: Served) -> None:
        """Entries appended, batch sizes and ingest latency count what the API recorded; the log's size is read."""
        key = metrics_key(served)
        event = {"action": "invoice.pay", "actor": "u-1"}
        assert 201 == served.client.post("/api/v1/events", json=[event] * 3, headers=served.auth("writer")).status_code
        assert 201 == served.client.post("/api/v1/events", json=event, headers=served.auth("writer")).status_code
        found = scrape(served, key)
        assert 4 == found["graven_entries_appended_total"]
        assert (2, 4) == (found["graven_ingest_batch_size_count"], found["graven_ingest_batch_size_sum"])
        assert 1 == found["graven_ingest_batch_size_bucket{le=1.0}"]
        assert 2 == found["graven_ingest_seconds_count"]
        assert 0 < found["graven_ingest_seconds_sum"]
        assert served.trail.size == found["graven_log_entries"]

    def test_checkpoint_figures(self, served: Served) -> None:
        """Once a checkpoint covers the log its age is 0 and its size the log's."""
        key = metrics_key(served)  # creating it is an entry too
        served.client.post("/api/v1/events", json={"action": "a.b", "actor": "u"}, headers=served.auth("writer"))
        served.trail.checkpoint()
        found = scrape(served, key)
        assert (served.trail.size, 0.0, 0.0) == (
            found["graven_checkpoint_size"], found["graven_checkpoint_age_seconds"], found["graven_signing_degraded"]
        )  # fmt: skip

    def test_verification_results(self, served: Served) -> None:
        """A finished verification job counts under its result."""
        started = served.client.post("/api/v1/verifications", headers=served.auth("auditor")).json()
        for _ in range(200):
            job = served.client.get(f"/api/v1/verifications/{started['id']}", headers=served.auth("auditor")).json()
            if job["status"] != "running":
                break
            time.sleep(0.05)
        assert "done" == job["status"]
        found = scrape(served, metrics_key(served))
        assert (1, 0, 0) == tuple(
            found[f"graven_verifications_total{{result={r}}}"] for r in ("intact", "damaged", "error")
        )

    def test_throttled_requests(self, serve_log: Factory) -> None:
        """Each request refused 429 for too many failed authentications is counted."""
        served = serve_log(auth_failure_limit=2)
        key = metrics_key(served)
        codes = [served.client.get("/api/v1/entries", headers={"Authorization": "Bearer graven_x_wrong"}).status_code
                 for _ in range(4)]  # fmt: skip
        assert [401, 401, 429, 429] == codes
        scraper = TestClient(served.app, client=("192.0.2.9", 9100))  # the tests' own address is locked out now
        assert 2 == scrape(served, key, scraper)["graven_throttled_requests_total"]

    def test_witness_failures(self, served: Served) -> None:
        """A witness that cannot be reached counts failures and has no cosignature age."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # nobody listens once closed
        key = metrics_key(served)
        served.trail.checkpoint()
        pusher = served.trail.pusher = Pusher(served.trail, [url], timeout=2)
        pusher.push_all()
        pusher.wait(30)  # and any push the background signer started
        found = scrape(served, key)
        assert 1 <= pusher.failures[url] == found[f"graven_witness_failures_total{{witness={url}}}"]
        assert f"graven_witness_cosignature_age_seconds{{witness={url}}}" not in found

    def test_forwarder_lag_and_readiness(self, served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A forwarder that delivered nothing lags by the whole log; past its bound /readyz names only the check."""
        config = tmp_path / "graven.toml"
        config.write_text(f'[forward.files]\nsink = "jsonl"\npath = "{tmp_path / "out"}"\n')
        monkeypatch.setenv("GRAVEN_CONFIG", str(config))
        key = metrics_key(served)
        served.client.post("/api/v1/events", json={"action": "a.b", "actor": "u"}, headers=served.auth("writer"))
        served.trail.checkpoint()
        found = scrape(served, key)
        assert served.trail.size == found["graven_forwarder_lag_entries{forwarder=files}"]
        assert 200 == served.client.get("/readyz").status_code  # within the default bound (300 s)
        served.app.state.graven.config.forward_lag_bound = 0.0
        time.sleep(0.01)
        response = served.client.get("/readyz")
        assert (503, {"status": "not ready", "failing": ["forwarders"]}) == (response.status_code, response.json())


class TestFormatters:
    def record(self) -> logging.LogRecord:
        record = logging.LogRecord("graven.server", logging.WARNING, __file__, 1, "could not %s", ("sign",), None)
        record.request_id = "req-1"
        record.index = 7
        return record

    def test_json_line(self) -> None:
        """A JSON line holds the time, level, logger, message, request id and the extra fields."""
        line = json.loads(JsonFormatter().format(self.record()))
        assert {"level": "warning", "logger": "graven.server", "message": "could not sign", "request_id": "req-1",
                "index": 7} == {k: v for k, v in line.items() if k != "time"}  # fmt: skip
        assert line["time"].endswith("Z")

    def test_text_line(self) -> None:
        """A text line is one line: time, level, logger, message, then key=value pairs (quoted when needed)."""
        record = self.record()
        record.path = "/a b"
        text = TextFormatter().format(record)
        assert text.split(" ", 1)[1] == 'WARNING graven.server could not sign request_id=req-1 index=7 path="/a b"'

    def test_unknown_format_refused(self) -> None:
        """configure() names the formats it knows."""
        with pytest.raises(ValueError, match="one of text, json; got 'xml'"):
            configure("xml")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_served_log_lines(tmp_path: Path, fmt: str) -> None:
    """`graven serve --log-format`: one line per request on stderr carrying the request id, which the answer returns."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAVEN_")}
    subprocess.run([EXE, "init"], cwd=tmp_path, env=env, check=True, capture_output=True, timeout=60)
    port = free_port()
    with open(tmp_path / "serve.log", "wb") as out:
        command = [EXE, "serve", "--port", str(port), "--log-format", fmt, "--access-log"]
        server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the server did not start"
            with contextlib.suppress(httpx.TransportError):
                response = httpx.get(f"http://127.0.0.1:{port}/readyz", headers={"x-request-id": "probe-42"}, timeout=2)
                break
            time.sleep(0.2)
        assert (200, "probe-42") == (response.status_code, response.headers["x-request-id"])
        assert 401 == httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code
        time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=30)
    lines = (tmp_path / "serve.log").read_text().splitlines()
    probe = [line for line in lines if "probe-42" in line]
    assert 1 == len(probe), lines
    if fmt == "json":
        line = json.loads(probe[0])
        assert ("graven.http", "GET", "/readyz", 200) == (line["logger"], line["method"], line["path"], line["status"])
        assert any(json.loads(x).get("status") == 401 for x in lines if x.startswith("{"))
    else:
        assert "INFO    graven.http GET /readyz 200 request_id=probe-42 method=GET path=/readyz" in probe[0]
