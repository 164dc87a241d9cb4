"""The README's promises, run as written: its independent verifier works on a real log."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_opens_with_the_two_commands() -> None:
    """The README starts with the demo command and the test command, and CI runs the latter."""
    text = README.read_text()
    first_block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert ["./dev demo", "./dev test"] == commands
    ci = (README.parent / ".ci" / "run").read_text()
    assert "./dev test\n" in ci


def test_independent_verifier_snippet(tmp_path: Path) -> None:
    """The Python verifier in the README, using only rfc8785 and cryptography, accepts a real log."""
    snippet = re.search(r"```python\n(import base64, hashlib.*?)```", README.read_text(), re.S)
    assert snippet is not None
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    graven = Path(bindir) / "graven"
    subprocess.run(
        [graven, "demo", "--story", "--dir", ".graven"], cwd=tmp_path, env=env, check=True, capture_output=True
    )
    env |= {"GRAVEN_DB": ".graven/trail.db", "GRAVEN_SIGNING_KEY": ".graven/signing.key"}
    out = subprocess.run(
        [sys.executable, "-c", snippet.group(1)], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert 0 == out.returncode, out.stderr
    assert "10 entries; checkpoint of size 10 verified" in out.stdout


def test_published_schema_snippet(tmp_path: Path) -> None:
    """The README's JSON Schema example runs as written: a recorded entry validates against the shipped schema."""
    snippet = re.search(r"```python\n(import json\nfrom importlib import resources.*?)```", README.read_text(), re.S)
    assert snippet is not None
    out = subprocess.run([sys.executable, "-c", snippet.group(1)], cwd=tmp_path, capture_output=True, text=True,
                         check=False)  # fmt: skip
    assert 0 == out.returncode, out.stderr
    assert "file.delete [{'id': 'f-9', 'type': 'file'}] expired" == out.stdout.strip()
