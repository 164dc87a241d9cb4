"""The benchmark script keeps working (its figures are read by people, not asserted here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.pgserver import PG_URL, Server

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_log.py"


@pytest.mark.slow
def test_quick_benchmark_runs(tmp_path: Path) -> None:
    """`bench_log.py --quick` completes and prints every measurement with its baseline."""
    out = subprocess.run(
        [sys.executable, BENCH, "--quick", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert 0 == out.returncode, out.stderr[-2000:]
    for label in ("record(), 1 per commit", "record_many(), 1,000 per commit", "verify()", "bytes on disk per entry"):
        assert label in out.stdout


@pytest.mark.slow
def test_quick_capture_benchmark_runs(tmp_path: Path) -> None:
    """`bench_capture.py --quick` completes and prints the request-path and ORM rows with their baselines."""
    script = BENCH.with_name("bench_capture.py")
    out = subprocess.run(
        [sys.executable, script, "--quick", "--calls", "100", "--commits", "50", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert 0 == out.returncode, out.stderr[-2000:]
    for label in (
        "+ trail.record() added, p50", "in trail.action() added, p99", "SQLite: insert, 1 row per commit",
        "SQLite:   Continuum, same per commit", "SQLite: bulk update(...).where(), 100 rows",
    ):  # fmt: skip
        assert label in out.stdout


def test_quick_core_benchmark_runs() -> None:
    """`bench_core.py --quick` compares msgspec with pydantic, prepare with the full checks, and the
    one-pass verification with the whole-log one, each row with its baseline."""
    out = subprocess.run(
        [sys.executable, BENCH.with_name("bench_core.py"), "--quick"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert 0 == out.returncode, out.stderr[-2000:]
    for label in ("schema conversion of one event", "(pydantic v2)", "prepare(): checks, leaf and hash",
                  "verification pass, 5,000 entries", "(verify_log)"):  # fmt: skip
        assert label in out.stdout


def test_quick_http_benchmark_runs(tmp_path: Path) -> None:
    """`bench_http.py --quick` serves a log, loads it over HTTP, checks every event and prints the ratio."""
    out = subprocess.run(
        [sys.executable, BENCH.with_name("bench_http.py"), "--quick", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert 0 == out.returncode, out.stderr[-2000:]
    assert "every event present exactly once at its returned index, log verifies: yes" in out.stdout
    assert "entries/s, 100 per request, 2 clients" in out.stdout


@pytest.mark.slow
def test_quick_pg_benchmark_runs(pg: Server) -> None:
    """`bench_pg.py --quick` completes on the real server and prints every goal with its verdict."""
    out = subprocess.run(
        [sys.executable, BENCH.with_name("bench_pg.py"), "--quick", "--url", PG_URL],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert 0 == out.returncode, out.stderr[-2000:]
    for label in (
        "record_many(), 1,000 per commit", "record(), 1 per commit", "verify() (2,000 entries)",
        "with integrate() of its events", "history((\"customer\", id)) at 20,000, warm, p50",
        "request: UPDATE + event in its transaction", "ORM one-row UPDATE + commit, same_database=True",
    ):  # fmt: skip
        assert label in out.stdout
    goal_rows = [line for line in out.stdout.splitlines() if ">= " in line or "<= " in line or "< 5 ms" in line]
    assert goal_rows
    assert all(line.rstrip().endswith(("PASS", "MISS")) for line in goal_rows), goal_rows


@pytest.mark.slow
def test_quick_sourcing_benchmark_runs(pg: Server) -> None:
    """`bench_sourcing.py --quick` runs the same account on graven.eventsourcing, graven.sourcing and
    the eventsourcing library's SQLite and PostgreSQL persistence, and prints every goal with its verdict."""
    out = subprocess.run(
        [sys.executable, BENCH.with_name("bench_sourcing.py"), "--quick", "--url", PG_URL],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert 0 == out.returncode, out.stderr[-2000:]
    for label in (
        "append, 1 event per command (200), graven.eventsourcing/SQLite vs library/SQLite",
        "append, 100 events per command (20), graven.sourcing/SQLite vs library/SQLite",
        "append, 100 events per command (20), graven.eventsourcing/PostgreSQL vs library/PostgreSQL",
        "load 2,000 events, with snapshot, graven.sourcing/SQLite vs library/SQLite",
        "load 2,000 events, no snapshot, graven.eventsourcing/PostgreSQL vs library/PostgreSQL",
    ):
        assert label in out.stdout
    goal_rows = [line for line in out.stdout.splitlines() if ">= " in line or "< 5 ms" in line]
    assert 8 == len(goal_rows)
    assert all(line.rstrip().endswith(("PASS", "MISS")) for line in goal_rows), goal_rows


@pytest.mark.slow
def test_quick_sourcing_state_benchmark_runs(tmp_path: Path) -> None:
    """`bench_sourcing_state.py --quick` completes, the two answers agree, and the goal row is printed."""
    out = subprocess.run(
        [sys.executable, BENCH.with_name("bench_sourcing_state.py"), "--quick", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert 0 == out.returncode, out.stderr[-2000:]
    for label in ("p50 (ms)", "p99 (ms)", "plain sqlite3", "< 10 ms"):
        assert label in out.stdout


def test_quick_metrics_benchmark_runs(tmp_path: Path) -> None:
    """`bench_metrics.py --quick` scrapes /metrics and /healthz of a loaded server and prints the goal's verdict."""
    out = subprocess.run(
        [sys.executable, BENCH.with_name("bench_metrics.py"), "--quick", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert 0 == out.returncode, out.stdout[-2000:] + out.stderr[-2000:]
    assert "scrape latency, median (ms)" in out.stdout
    assert "< 5 ms: PASS" in out.stdout or "< 5 ms: MISS" in out.stdout


def test_quick_archive_benchmark_runs(tmp_path: Path) -> None:
    """`bench_archive.py --quick` archives and prunes a small log, verifies it and prints every goal."""
    out = subprocess.run(
        [sys.executable, BENCH.with_name("bench_archive.py"), "--quick", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert 0 == out.returncode, out.stderr[-2000:]
    for label in ("archive, 4,500 entries", "prune, 4,500 bodies", "proof of a kept entry", "bytes per pruned entry"):
        assert label in out.stdout
