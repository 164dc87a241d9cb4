"""The README's "Shipping to a SIEM" section, run as written: its shell lines, then its Python
receiver check (own code, no Graven) on the files they produced, intact and tampered with."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import orjson

README = Path(__file__).resolve().parents[2] / "README.md"


def section() -> str:
    text = README.read_text()
    start = text.index("## Shipping to a SIEM")
    return text[start : text.index("\n## ", start + 5)]


def test_the_shell_example_and_the_own_code_check_run_as_written(tmp_path: Path) -> None:
    part = section()
    shell = re.search(r"```sh\n(.*?)```", part, re.S)
    python = re.search(r"```python\n(.*?)```", part, re.S)
    assert shell is not None
    assert python is not None
    bindir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAVEN_")}
    env |= {"PATH": bindir + os.pathsep + env.get("PATH", ""), "GRAVEN_ACTOR": "ops-1"}
    done = subprocess.run(["/bin/bash", "-euo", "pipefail", "-c", shell.group(1)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert 0 == done.returncode, done.stderr
    assert "OK  entries 0..1" in done.stdout
    # more entries, rotated into several files, for the own-code check to read
    events = b"\n".join(
        orjson.dumps({"action": "doc.read", "actor": {"type": "user", "id": f"u-{i}"}}) for i in range(60)
    )
    for args, stdin in (
        (["record", "-"], events),
        (["forward", "add", "siem", "jsonl", "path=siem-out", "max_bytes=4000", "batch=7", "--replace"], None),
        (["forward", "run", "--once"], None),
    ):
        subprocess.run(
            [Path(bindir) / "graven", *args], cwd=tmp_path, env=env, input=stdin, check=True, capture_output=True
        )
    assert len(list((tmp_path / "siem-out").glob("graven-*.jsonl"))) >= 3

    def own_check() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", python.group(1)], cwd=tmp_path, env=env, capture_output=True,
                              text=True, check=False)  # fmt: skip

    intact = own_check()
    assert 0 == intact.returncode, intact.stderr
    assert "63 entries, in order, each inside a signed checkpoint" in intact.stdout
    closed = sorted((tmp_path / "siem-out").glob("graven-*.jsonl"))[1]
    lines = closed.read_bytes().splitlines()
    entry = orjson.loads(lines[1])
    entry["outcome"] = "denied"
    lines[1] = orjson.dumps(entry)
    closed.write_bytes(b"\n".join(lines) + b"\n")
    tampered = own_check()
    assert 0 != tampered.returncode
    assert "AssertionError: altered in" in tampered.stderr
