"""The README's Django section, run as written on a copy of examples/django."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def section() -> str:
    text = README.read_text()
    start = text.index("\n## Django\n")
    return text[start : text.index("\n## ", start + 5)]


def test_the_settings_lines_are_those_of_the_example() -> None:
    block = re.search(r"```python\n(.*?)```", section(), re.S)
    assert block is not None
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    assert 3 == len(lines)  # a newcomer's whole set-up: under ten lines
    shown: dict[str, Any] = {}
    exec(block.group(1), shown)  # it runs as written  # noqa: S102
    example: dict[str, Any] = {"__file__": str(ROOT / "examples" / "django" / "shop" / "settings.py")}
    exec((ROOT / "examples" / "django" / "shop" / "settings.py").read_text(), example)  # noqa: S102
    assert "graven.django" == shown["INSTALLED_APPS"][0] == example["INSTALLED_APPS"][0]
    assert shown["MIDDLEWARE"][-1] in example["MIDDLEWARE"]
    assert shown["GRAVEN"]["MODELS"] == example["GRAVEN"]["MODELS"]
    assert {k: Path(v).name for k, v in shown["GRAVEN"].items() if k != "MODELS"} == {
        k: Path(v).name for k, v in example["GRAVEN"].items() if k != "MODELS"
    }


def test_the_walkthrough_runs(tmp_path: Path) -> None:
    block = re.search(r"```sh\n(.*?)```", section(), re.S)
    assert block is not None
    shutil.copytree(ROOT / "examples" / "django", tmp_path / "examples" / "django")
    bindir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "GRAVEN_"))}
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    bash = shutil.which("bash") or "/bin/bash"
    done = subprocess.run(
        [bash, "-e", "-c", block.group(1)], cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
        timeout=300,
    )  # fmt: skip
    assert 0 == done.returncode, done.stderr
    out = done.stdout
    for expected in ("customer.create", "iban (changed, value hidden)", "order.update", "open → paid"):
        assert expected in out
    assert "OK  The log is intact: 3 entries" in out
    assert "DE89370400440532013000" not in (tmp_path / "examples" / "django" / "audit.db").read_bytes().decode(
        "latin-1"
    )
