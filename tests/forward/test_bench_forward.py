"""``bench/bench_forward.py --quick`` keeps working (its figures are read by people, not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_forward.py"


@pytest.mark.slow
def test_quick_forward_benchmark_runs(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, BENCH, "--quick", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert 0 == out.returncode, out.stderr[-2000:]
    for label in ("JSONL sink", "plain loop", "HEC sink", "plain POSTs", "lag at 5,000 entries/s", "memory while"):
        assert label in out.stdout
