"""The real ``graven forward`` and ``graven receive`` commands, in subprocesses: configuration
changes recorded as entries, one-line refusals, kill -9 mid-delivery, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

import graven
from tests.forward.helpers import fill

GRAVEN = Path(sys.executable).parent / "graven"


def run(cwd: Path, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [GRAVEN, *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, "GRAVEN_ACTOR": "ops-1", **env},
        check=False, timeout=120,
    )  # fmt: skip
    if check:
        assert 0 == done.returncode, done.stderr
    return done


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("GRAVEN_DB", "GRAVEN_SIGNING_KEY", "GRAVEN_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    run(tmp_path, "init")
    return tmp_path


def test_add_list_remove_are_recorded_in_the_log(here: Path) -> None:
    run(here, "forward", "add", "siem", "jsonl", "path=out", "batch=50", "max_bytes=100000")
    listed = run(here, "forward", "list", "--json").stdout
    assert {"name": "siem", "sink": "jsonl", "format": "native", "batch": 50, "path": "out",
            "max_bytes": 100000} == orjson.loads(listed)  # fmt: skip
    again = run(here, "forward", "add", "siem", "stdout", check=False)
    assert 2 == again.returncode
    assert "exists" in again.stderr
    assert 1 == len(again.stderr.strip().splitlines())
    run(here, "forward", "add", "siem", "stdout", "--replace")
    run(here, "forward", "remove", "siem")
    actions = [orjson.loads(line) for line in run(here, "log", "--json", "--action", "forward.*").stdout.splitlines()]
    assert ["forward.sink.add", "forward.sink.change", "forward.sink.remove"] == [a["action"] for a in actions]
    assert all(a["actor"]["id"] == "ops-1" and a["targets"] == [{"type": "forwarder", "id": "siem"}] for a in actions)
    assert {"sink": "jsonl", "format": "native", "batch": 50, "path": "out", "max_bytes": 100000} == actions[0][
        "metadata"
    ]["config"]
    assert "[forward.siem]" not in (here / "graven.toml").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["jsonl", "path=out", "format=xml"], "format must be one of"),
        (["jsonl", "path=graven.toml.d/x/y", "max_bytes=-1"], "max_bytes must be above 0"),
        (["jsonl", "path=out", "token=abc"], "must not be written in graven.toml"),
        (["hec", "url=http://127.0.0.1:9/", "token_env=NOT_SET_ANYWHERE"], "which is not set"),
        (["hec", "url=http://127.0.0.1:9/", "token_env=PATH"], "cannot reach the receiver"),
    ],
)
def test_misconfiguration_is_refused_in_one_line_and_nothing_written(here: Path, args: list[str], message: str) -> None:
    done = run(here, "forward", "add", "bad", *args, check=False)
    assert 2 == done.returncode
    assert message in done.stderr
    assert 1 == len(done.stderr.strip().splitlines())
    assert not (here / "graven.toml").exists()


def test_status_shows_cursor_and_lag(here: Path) -> None:
    run(here, "forward", "add", "siem", "jsonl", "path=out")
    run(here, "forward", "run", "--once")
    run(here, "record", "--action", "doc.read")
    (row,) = [orjson.loads(line) for line in run(here, "forward", "status", "--json").stdout.splitlines()]
    assert (1, 2, 1) == (row["position"], row["log_size"], row["lag_entries"])


def _index(line: bytes) -> int:
    try:
        return int(orjson.loads(line).get("index", -1))
    except orjson.JSONDecodeError:
        return -1  # a torn last line, cut when the forwarder starts again


def test_kill_9_mid_delivery_loses_nothing_and_resends_at_most_one_batch(here: Path) -> None:
    with graven.open(here / ".graven" / "trail.db", signing_key=here / ".graven" / "signing.key") as trail:
        for _ in range(10):
            fill(trail, 2000)
        key = trail.verifier_key
    run(here, "forward", "add", "siem", "jsonl", "path=out", "batch=200", "max_bytes=200000")
    for _ in range(3):  # killed three times, at whatever point it has reached
        process = subprocess.Popen([GRAVEN, "forward", "run", "--poll", "0.01"], cwd=here,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        started = time.monotonic()
        before = sum(f.stat().st_size for f in (here / "out").glob("*.jsonl"))
        while time.monotonic() - started < 30:
            now = sum(f.stat().st_size for f in (here / "out").glob("*.jsonl"))
            if now > before + 300_000:
                break
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    # (a kill may land between closing a rotated file and opening the next: no active file then)
    assert list((here / "out").glob("*.jsonl"))
    (row,) = [orjson.loads(line) for line in run(here, "forward", "status", "--json").stdout.splitlines()]
    written = [_index(line) for f in (here / "out").glob("*.jsonl") for line in f.read_bytes().splitlines()]
    assert row["position"] < 20_001  # killed while it still had entries to deliver
    assert row["position"] <= max(written) + 1  # the cursor never ran ahead of what the files hold
    run(here, "forward", "run", "--once")
    done = run(here, "receive", "verify", "out", "--key", key, "--json", check=False)
    report = orjson.loads(done.stdout)
    assert report["ok"], report["message"]
    assert (0, 20_001) == (report["first"], report["end"])  # every entry, the forward.sink.add one included
    assert report["duplicates"] <= 3 * 200  # at most the unacknowledged batch, per kill


def test_sigterm_finishes_the_batch_in_flight_then_stops(here: Path) -> None:
    with graven.open(here / ".graven" / "trail.db", signing_key=here / ".graven" / "signing.key") as trail:
        fill(trail, 5000)
        key = trail.verifier_key
    run(here, "forward", "add", "siem", "jsonl", "path=out", "batch=100")
    process = subprocess.Popen([GRAVEN, "forward", "run"], cwd=here, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    active = here / "out" / "graven.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not active.exists() or active.stat().st_size < 50_000):
        time.sleep(0.005)
    process.send_signal(signal.SIGTERM)
    assert 0 == process.wait(30)
    last = orjson.loads(active.read_bytes().splitlines()[-1])
    assert "proof" in last  # the batch in flight was finished, proof and all
    (row,) = [orjson.loads(line) for line in run(here, "forward", "status", "--json").stdout.splitlines()]
    assert last["proof"]["end"] == row["position"]  # and acknowledged: the cursor is at its end
    run(here, "forward", "run", "--once")
    report = orjson.loads(run(here, "receive", "verify", "out", "--key", key, "--json").stdout)
    assert report["ok"]
    assert 0 == report["duplicates"]


def test_status_lists_dead_letters_with_their_reasons(here: Path) -> None:
    from graven.forward.cursor import Cursors

    run(here, "forward", "add", "siem", "jsonl", "path=out")
    with graven.open(here / ".graven" / "trail.db", signing_key=here / ".graven" / "signing.key") as trail:
        cursors = Cursors(trail.store)
        cursors.advance("siem", 1, 1, [(0, trail.get(0).id, "HTTP 422: no such field")])
        cursors.close()
    (row,) = [
        orjson.loads(line) for line in run(here, "forward", "status", "--dead-letters", "--json").stdout.splitlines()
    ]
    assert 1 == row["dead_letters"]
    assert [(0, "HTTP 422: no such field")] == [(d["index"], d["reason"]) for d in row["dead"]]
    text = run(here, "forward", "status", "--dead-letters").stdout
    assert "dead letter: entry 0 (" in text
    assert "HTTP 422: no such field" in text


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('sink = "hec"\nurl = "http://127.0.0.1:9"\ntoken_env = "NOT_SET_ANYWHERE"', "which is not set"),
        ('sink = "hec"\nurl = "http://127.0.0.1:9"\ntoken_env = "PATH"', "cannot reach the receiver"),
        ('sink = "jsonl"\npath = "out"\nformat = "leef"', "format must be one of"),
        ('sink = "syslog"\nhost = "127.0.0.1"\nport = 9\ntransport = "tcp"', "cannot reach the syslog receiver"),
    ],
)
def test_a_hand_edited_misconfiguration_is_refused_at_start(here: Path, table: str, message: str) -> None:
    (here / "graven.toml").write_text(f"[forward.bad]\n{table}\n")
    for command in (["forward", "run", "--once"], ["serve", "--port", "0", "--forward", "bad"]):
        done = run(here, *command, check=False)
        assert 2 == done.returncode, command
        assert message in done.stderr, command
        assert 1 == len(done.stderr.strip().splitlines()), done.stderr


def test_a_receivers_answer_is_printed_with_control_characters_made_visible(here: Path) -> None:
    from graven.forward.cursor import Cursors

    run(here, "forward", "add", "siem", "jsonl", "path=out")
    with graven.open(here / ".graven" / "trail.db", signing_key=here / ".graven" / "signing.key") as trail:
        cursors = Cursors(trail.store)
        cursors.fail("siem", "HTTP 503: \x1b[2J\x1b[31mall good\rOK")
        cursors.close()
    text = run(here, "forward", "status").stdout
    assert "\x1b" not in text
    assert "\r" not in text
    assert "HTTP 503: \\x1b[2J\\x1b[31mall good\\rOK" in text
