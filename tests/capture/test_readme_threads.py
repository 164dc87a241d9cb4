"""The README's examples of work in other threads and of OpenTelemetry, run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def blocks() -> list[str]:
    text = README.read_text()
    start = text.index("\n### Work in other threads, and OpenTelemetry\n")
    section = text[start : text.index("\n## ", start)]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_section_has_both_examples() -> None:
    """One example for thread pools and asyncio.to_thread, one for OpenTelemetry."""
    found = blocks()
    assert 2 == len(found)
    assert "graven.carry" in found[0]
    assert "start_as_current_span" in found[1]


@pytest.mark.parametrize("which", [0, 1], ids=["threads", "opentelemetry"])
def test_example_runs(which: int, tmp_path: Path) -> None:
    """Each example runs in a fresh folder and its own assertions hold."""
    done = subprocess.run(
        [sys.executable, "-c", blocks()[which]], cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120
    )
    assert 0 == done.returncode, done.stderr
    assert (tmp_path / "audit.db").exists()
