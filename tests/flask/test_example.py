"""The README's Flask section, run as written on a copy of examples/flask."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
EXAMPLE = ROOT / "examples" / "flask"


def section() -> str:
    text = README.read_text()
    start = text.index("\n## Flask and any WSGI app\n")
    return text[start : text.index("\n## ", start + 5)]


def test_the_readme_shows_the_example_whole() -> None:
    """The Python block is examples/flask/app.py, character for character."""
    block = re.search(r"```python\n(.*?)```", section(), re.S)
    assert block is not None
    assert (EXAMPLE / "app.py").read_text() == block.group(1)


def test_the_walkthrough_runs(tmp_path: Path) -> None:
    """Served by flask run and called with curl: one success, one refused action, one refused request."""
    block = re.search(r"```sh\n(.*?)```", section(), re.S)
    assert block is not None
    shutil.copytree(EXAMPLE, tmp_path / "examples" / "flask")
    bindir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "GRAVEN_", "DJANGO_"))}
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    bash = shutil.which("bash") or "/bin/bash"
    shell = subprocess.Popen(
        [bash, "-e", "-c", block.group(1)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = shell.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGTERM)  # the server, should the walkthrough stop before its kill
    assert 0 == shell.returncode, err
    assert '{"voided":"in-1"}' in out
    folder = tmp_path / "examples" / "flask"
    listed = subprocess.run(
        [Path(bindir) / "graven", "log", "--db", "audit.db", "--signing-key", "audit.key", "--json"],
        cwd=folder, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    entries = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [
        ("invoice.void", "success", "u-1", "invoice:in-1"),
        ("invoice.void", "denied", "u-1", "invoice:paid-2"),
        ("http.request", "denied", "anonymous", "route:POST /invoices/<invoice_id>/void"),
    ] == [
        (
            e["action"],
            e["outcome"],
            e["actor"].get("id", e["actor"]["type"]),
            f"{e['targets'][0]['type']}:{e['targets'][0]['id']}",
        )
        for e in entries
    ]
    assert "a paid invoice cannot be voided" == entries[1]["reason"]
    assert all(e["actor"]["ip"] == "127.0.0.1" and e["context"]["request_id"] for e in entries)
