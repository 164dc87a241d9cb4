"""JSON Lines survive line readers: every JSON output escapes the characters str.splitlines() splits on
(U+0085, U+2028, U+2029; the C0 ones JSON escapes anyway), while the leaf (RFC 8785 of the parsed
entry) stays byte for byte what was stored."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

import graven
from graven.core import canonical, jsonlines
from graven.web import Sandbox, create_web_app
from graven.web.live import message
from tests.server.server_harness import Served

BREAKERS = ["\x85", "\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\r", "\n"]
BIN = Path(sys.executable).parent
README = Path(__file__).resolve().parent.parent / "README.md"


def hostile_event(n: int, char: str) -> dict[str, Any]:
    """An event carrying ``char`` in every kind of field that may hold it: names, reason, target name,
    change values, keys (identifiers refuse these characters)."""
    return {
        "action": "user.rename",
        "actor": {"type": "user", "id": f"u{n}", "name": f"Eve{char}Mallory"},
        "targets": [{"type": "user", "id": f"t{n}", "name": f"T{char}{n}"}],
        "outcome": "denied",
        "reason": f"line one{char}line two",
        "changes": [{"field": "name", "old": f"a{char}b", "new": {"k": f"x{char}y"}}],
        "metadata": {f"key{char}": [f"v{char}"]},
    }


def hostile_events() -> list[dict[str, Any]]:
    return [hostile_event(n, char) for n, char in enumerate(BREAKERS)]


def assert_one_record_per_entry(text: str, expected: list[dict[str, Any]]) -> None:
    lines = text.splitlines()
    assert len(expected) == len(lines)
    assert expected == [json.loads(line) for line in lines]
    assert not any(c in text for c in jsonlines.LINE_BREAKS)


@given(st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20))  # fmt: skip
def test_dumps_is_one_line_and_parses_back(value: Any) -> None:
    """Any JSON value is one line for splitlines() and parses back to itself, indented or not."""
    text = jsonlines.line(value).decode("utf-8")
    assert [text[:-1]] == text.splitlines()
    assert value == orjson.loads(text)
    assert value == orjson.loads(jsonlines.dumps(value, indent=True))


def test_leaf_bytes_keep_the_characters_raw(trail: graven.Trail) -> None:
    """The stored leaf is RFC 8785 (raw U+2028 and friends); re-canonicalising the parsed line gives it."""
    trail.record_many(hostile_events())
    for entry in trail.query(limit=100).entries:
        parsed = orjson.loads(jsonlines.line(entry.to_json()))
        del parsed["index"]
        assert canonical.canonical(entry.data) == canonical.canonical(parsed)
    leaf = canonical.canonical(trail.get(1).data).decode("utf-8")
    assert "Eve\u2028Mallory" in leaf  # RFC 8785 keeps it raw: the exports escape it, the leaf does not


def run(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAVEN_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run([BIN / "graven", *args], cwd=cwd, env=env, capture_output=True, check=True, timeout=60)
    return done.stdout.decode("utf-8")


@pytest.fixture
def hostile_log(tmp_path: Path) -> Path:
    """A log on disk (.graven/) holding one entry per line-breaking character."""
    run(tmp_path, "init")
    with graven.open(tmp_path / ".graven" / "trail.db", signing_key=tmp_path / ".graven" / "signing.key") as trail:
        trail.record_many(hostile_events())
        trail.checkpoint()
    return tmp_path


def test_log_json_and_show_json(hostile_log: Path) -> None:
    """`graven log --json` gives one line per entry; `graven show --json` holds no raw breaker."""
    with graven.open(hostile_log / ".graven" / "trail.db") as trail:
        expected = [e.to_json() for e in trail.query(limit=100).entries]
    assert_one_record_per_entry(run(hostile_log, "log", "--json"), expected)
    shown = run(hostile_log, "show", "--json", "2")
    assert expected[2] == json.loads(shown)
    assert not any(c in shown for c in jsonlines.LINE_BREAKS)


def test_readme_recipe_verifies_such_entries(hostile_log: Path) -> None:
    """The README's independent verifier accepts a log whose entries hold every breaker."""
    snippet = re.search(r"```python\n(import base64, hashlib.*?)```", README.read_text(), re.S)
    assert snippet is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAVEN_")}
    env |= {"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "GRAVEN_DB": ".graven/trail.db",
            "GRAVEN_SIGNING_KEY": ".graven/signing.key"}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", snippet.group(1)], cwd=hostile_log, env=env, capture_output=True,
                          text=True, check=False, timeout=60)  # fmt: skip
    assert 0 == done.returncode, done.stderr
    assert f"{len(BREAKERS)} entries; checkpoint of size {len(BREAKERS)} verified" in done.stdout


def test_server_export_tail_and_query(served: Served) -> None:
    """The API's JSON Lines export, its SSE tail and its JSON answers escape the breakers."""
    first = served.trail.size
    served.trail.record_many(hostile_events())
    expected = [e.to_json() for e in served.trail.query(action="user.rename", limit=100).entries]
    exported = served.client.get("/api/v1/export", params={"action": "user.rename"}, headers=served.auth("auditor"))
    assert 200 == exported.status_code
    assert_one_record_per_entry(exported.text, expected)
    with served.client.stream("GET", "/api/v1/tail", params={"from": first, "limit": len(BREAKERS)},
                              headers=served.auth("reader")) as tail:  # fmt: skip
        stream = b"".join(tail.iter_bytes()).decode("utf-8")
    data = [json.loads(line[len("data: ") :]) for line in stream.splitlines() if line.startswith("data: ")]
    assert expected == data
    assert not any(c in stream for c in jsonlines.LINE_BREAKS)
    page = served.client.get("/api/v1/entries", params={"action": "user.rename"}, headers=served.auth("reader"))
    assert not any(c in page.text for c in jsonlines.LINE_BREAKS)
    assert expected == page.json()["entries"]


def test_web_console_export_and_live_events(tmp_path: Path) -> None:
    """The web console's JSON Lines export and its live events escape the breakers."""
    box = Sandbox(tmp_path / "demo")
    try:
        first = box.trail.size
        box.trail.record_many(hostile_events())
        expected = [e.to_json() for e in box.trail.query(after=first - 1, limit=100).entries]
        with TestClient(create_web_app(demo=True, sandbox=box)) as client:
            response = client.get("/console/export", params={"format": "jsonl", "action": "user.rename"})
        assert 200 == response.status_code
        assert_one_record_per_entry(response.text, expected)
        event = message("entry", expected[1], 1).decode("utf-8")
        assert 4 == len(event.splitlines())  # id, event, data and the blank line ending the event
        assert ["id: 1", "event: entry"] == event.splitlines()[:2]
        assert expected[1] == json.loads(event.splitlines()[2][len("data: ") :])
    finally:
        box.close()
