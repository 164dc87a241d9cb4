"""The README's "Retention and archives" commands run as written, in a fresh folder."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_retention_and_archives_commands_run(tmp_path: Path) -> None:
    """Every command of the section succeeds; the archive lands where the text says."""
    section = README.read_text().split("### Retention and archives", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    bindir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAVEN_")}
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    out = subprocess.run(
        [shutil.which("bash") or "/bin/bash", "-euo", "pipefail", "-c", block.group(1)], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert 0 == out.returncode, out.stdout + out.stderr
    assert "archived entries 0..3 to archives/2025-q4" in out.stdout
    assert "entries 0..3 match its tiles" in out.stdout
    assert (tmp_path / "archives" / "2025-q4" / "tile" / "0" / "000.p" / "4").exists()
