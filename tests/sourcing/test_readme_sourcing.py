"""The README's "Event sourcing" example runs as written and prints what its comments say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_event_sourcing_example_runs(tmp_path: Path) -> None:
    """The section's Python block runs in a fresh folder; each printed line matches its comment."""
    section = README.read_text().split("## Event sourcing", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    out = subprocess.run([sys.executable, "-c", code.group(1)], cwd=tmp_path, capture_output=True, text=True,
                         check=False, timeout=120)  # fmt: skip
    assert 0 == out.returncode, out.stderr
    promised = [line.split("# ", 1)[1].strip() for line in code.group(1).splitlines() if "print(" in line]
    assert promised == out.stdout.splitlines()
