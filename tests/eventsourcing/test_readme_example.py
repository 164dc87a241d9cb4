"""The README's eventsourcing example, run as written in a fresh folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_eventsourcing_example(tmp_path: Path) -> None:
    """The example stores an application's events in a log that verifies, naming who acted."""
    section = README.read_text().split("### The eventsourcing library", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAVEN_", "PERSISTENCE_MODULE"))}
    out = subprocess.run(
        [sys.executable, "-c", code.group(1)], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert 0 == out.returncode, out.stderr
    lines = out.stdout.splitlines()
    assert [
        "0 eventsourcing.event Bank __main__:Account.Opened",
        "1 eventsourcing.event u-17 __main__:Account.Credited",
    ] == lines
    assert (tmp_path / "bank.db").exists()
