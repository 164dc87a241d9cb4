"""The README's Celery section, run as written on a copy of examples/celery: a worker in its own process."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
EXAMPLE = ROOT / "examples" / "celery"
BROKERS = {"redis": "redis://127.0.0.1:6379/0", "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//"}


def section() -> str:
    text = README.read_text()
    start = text.index("\n## Celery\n")
    return text[start : text.index("\n## ", start + 5)]


def test_the_readme_shows_the_example_files() -> None:
    """The two Python blocks are tasks.py and queue_work.py, character for character."""
    blocks = re.findall(r"```python\n(.*?)```", section(), re.S)
    assert [(EXAMPLE / "tasks.py").read_text(), (EXAMPLE / "queue_work.py").read_text()] == blocks


@pytest.fixture(params=sorted(BROKERS))
def broker(request: pytest.FixtureRequest) -> str:
    """The broker the example runs on (BROKER_URL), its queue emptied of anything an earlier run left."""
    url = BROKERS[request.param]
    with Celery(broker=url).connection_for_write() as conn:
        conn.default_channel.queue_declare("invoices", durable=True, auto_delete=False)
        conn.default_channel.queue_purge("invoices")
    return url


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    """A copy of the example; a worker the walkthrough left running is stopped afterwards."""
    shutil.copytree(EXAMPLE, tmp_path / "examples" / "celery")
    yield tmp_path
    pidfile = tmp_path / "examples" / "celery" / "worker.pid"
    for _ in range(100):  # the walkthrough's kill: the worker removes its pid file as it stops
        if not pidfile.exists():
            return
        time.sleep(0.1)
    os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)  # the walkthrough stopped before its kill


def test_the_walkthrough_runs(folder: Path, broker: str) -> None:
    """A real worker process: the task queued on Dana's behalf names her, the other is the service."""
    block = re.search(r"```sh\n(.*?)```", section(), re.S)
    assert block is not None
    bindir = str(Path(sys.executable).parent)
    # DJANGO_SETTINGS_MODULE (set once tests/django ran) would make the worker set Django up
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "GRAVEN_", "BROKER_", "DJANGO_"))}
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["BROKER_URL"] = broker
    bash = shutil.which("bash") or "/bin/bash"
    done = subprocess.run(
        [bash, "-e", "-c", block.group(1)], cwd=folder, env=env, capture_output=True, text=True, check=False,
        timeout=180,
    )  # fmt: skip
    log = folder / "examples" / "celery" / "worker.log"
    assert 0 == done.returncode, (done.stdout, done.stderr, log.read_text() if log.exists() else "no worker log")
    listed = subprocess.run(
        [Path(bindir) / "graven", "log", "--db", "audit.db", "--signing-key", "audit.key", "--json"],
        cwd=folder / "examples" / "celery", env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    entries = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [
        ({"type": "user", "id": "u-1", "name": "Dana"}, "in-1", "req-42"),
        ({"type": "service", "id": "tasks.send_reminder"}, "in-2", None),
    ] == [(e["actor"], e["targets"][0]["id"], e["context"].get("request_id")) for e in entries]
    assert {"job"} == {e["source"] for e in entries}
