"""Entry content is printed as literal text by every command: never read as Rich markup or emoji
codes, never able to emit an escape sequence (style, hyperlink, screen clearing) of its own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from graven.render import literal, visible

BIN = Path(sys.executable).parent
# What an attacker plants: markup that breaks parsing, links, styles, emoji codes, raw ANSI/OSC 8
# sequences, a bidi override and a line break.
LINK = "[link=https://evil.example/]click[/link]"
BLINK = "[blink]t-1[/blink]"
RAW = "\x1b[2J\x1b]8;;https://evil.example/\x1b\\here\x1b]8;;\x1b\\\x1b[5m"
HOSTILE_EVENT = {
    "action": "session.login",
    "actor": {"type": "user", "id": ":smiley:[/]", "name": "[/]" + RAW, "ip": "10.0.0.1"},
    "targets": [{"type": "customer", "id": BLINK}],
    "outcome": "failure",
    "reason": LINK + "\u202eevil\nsecond line",
    "changes": [{"field": "[bold]email[/bold]", "old": "[/]", "new": RAW}],
    "context": {"route": "[red]x[/red]"},
    "metadata": {"[i]k[/i]": RAW},
}
SHOWN = ["[/]", LINK, BLINK, ":smiley:[/]", "[bold]email[/bold]", "[red]x[/red]", "[i]k[/i]",
         "\\x1b[2J\\x1b]8;;https://evil.example/\\x1b\\here", "\\u202eevil\\nsecond line"]  # fmt: skip
SGR = re.compile("\x1b\\[[0-9;]*m")
OUR_STYLES = {"1", "31", "32", "33", "35", "1;31", "1;32", "0", ""}  # bold and the outcome/diff colours
PROGRESS = re.compile("38;5;[0-9]+")  # colours Rich may pick for tables and bars


def run(cwd: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Any:
    """``graven ARGS`` in a terminal-like environment: colours forced, wide, personal data declared."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("GRAVEN_") and k != "NO_COLOR"}
    env = base | {"FORCE_COLOR": "1", "TERM": "xterm-256color", "COLUMNS": "500", "GRAVEN_ACTOR": "user:ops",
            "GRAVEN_PERSONAL_FIELDS": "email", "GRAVEN_SUBJECT_TYPES": "customer", **(env or {})}  # fmt: skip
    return subprocess.run([BIN / "graven", *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True,
                          encoding="utf-8", timeout=60, check=False)  # fmt: skip


def assert_literal(output: str, *expected: str) -> None:
    """Every escape sequence in ``output`` is one of our own colours; ``expected`` appear as text."""
    assert "Traceback" not in output
    assert "internal error" not in output
    foreign = {s for s in SGR.findall(output) if s[2:-1] not in OUR_STYLES and not PROGRESS.fullmatch(s[2:-1])}
    assert not foreign, foreign
    plain = SGR.sub("", output)
    assert "\x1b" not in plain  # no OSC 8 hyperlink, no cursor or screen control
    assert "\u202e" not in plain
    for text in expected:
        assert text in plain, (text, plain)


@pytest.fixture
def hostile_log(tmp_path: Path) -> Path:
    assert 0 == run(tmp_path, "init").returncode
    personal = {"action": "customer.update", "outcome": "success", "targets": [{"type": "customer", "id": "c-1"}],
                "changes": [{"field": "email", "old": "a@example.org", "new": "b@example.org"}]}  # fmt: skip
    events = [HOSTILE_EVENT, {**HOSTILE_EVENT, **personal}]
    done = run(tmp_path, "record", "-", stdin="\n".join(orjson.dumps(e).decode() for e in events))
    assert 0 == done.returncode, done.stderr
    return tmp_path


def test_helpers_show_controls_and_keep_markup_literal() -> None:
    """visible() writes C0, DEL, C1, bidi and separators as escapes; literal() is never markup."""
    assert "a\\x1bb\\x7f\\x9b\\u202e\\u2066\\u2028\\x00\\n\\t" == visible("a\x1bb\x7f\x9b\u202e\u2066\u2028\x00\n\t")
    assert "plain é ü 中 [x] \\ ok" == visible("plain é ü 中 [x] \\ ok")
    assert "[/][link=x]y" == literal("[/][link=x]y").plain
    assert [] == literal("[bold]x[/bold]").spans


def test_log_table_prints_hostile_values_literally(hostile_log: Path) -> None:
    """`graven log` neither fails on `[/]` nor renders links, styles, emoji or raw escapes."""
    done = run(hostile_log, "log")
    assert 0 == done.returncode, done.stderr
    assert_literal(done.stdout, "[/]", BLINK, ":smiley:[/]", "[bold]email[/bold]", "\\x1b[2J")
    assert "\U0001f603" not in done.stdout  # :smiley: stays text


def test_show_prints_hostile_values_literally(hostile_log: Path) -> None:
    """`graven show` prints every field of the hostile entry as text, each change included."""
    done = run(hostile_log, "show", "0")
    assert 0 == done.returncode, done.stderr
    assert_literal(done.stdout, *SHOWN)


def test_forget_message_and_erased_values_are_shown(hostile_log: Path) -> None:
    """`[erased]` survives in forget's message and in `graven log` / `graven show` of the entry."""
    done = run(hostile_log, "forget", "customer:c-1", "--reason", LINK)
    assert 0 == done.returncode, done.stderr
    assert_literal(done.stdout, "its sealed values now read as [erased]")
    table = run(hostile_log, "log", "--action", "customer.update")
    assert_literal(table.stdout, "email: [erased] → [erased]")
    shown = run(hostile_log, "show", "1")
    assert_literal(shown.stdout, "- [erased]", "+ [erased]")
    forgot = run(hostile_log, "show", "2")
    assert_literal(forgot.stdout, LINK)


def test_verify_and_errors_stay_literal(hostile_log: Path) -> None:
    """verify's report and one-line errors quoting user input print as text, with controls shown."""
    done = run(hostile_log, "verify")
    assert 0 == done.returncode, done.stderr
    assert_literal(done.stdout, "OK")  # stderr holds the progress bar (its own cursor controls)
    bad = run(hostile_log, "log", "--since", "[/]\x1b[2J")
    assert 2 == bad.returncode
    assert_literal(bad.stderr, "[/]\\x1b[2J")
    assert 1 == len(bad.stderr.strip().splitlines())


def test_account_tables_show_controls(hostile_log: Path) -> None:
    """`graven keys list` and `graven users list` print who created each (from the store) literally.
    (An actor id cannot hold a control character such as ESC: identifiers refuse them.)"""
    refused = run(hostile_log, "keys", "create", "--name", "svc", "--role", "reader",
                  env={"GRAVEN_ACTOR": "user:ops\x1b[2J"})  # fmt: skip
    assert 0 != refused.returncode
    assert "U+001B" in refused.stderr
    creator = {"GRAVEN_ACTOR": "user:ops[/][blink]"}
    assert 0 == run(hostile_log, "keys", "create", "--name", "svc", "--role", "reader", env=creator).returncode
    added = run(hostile_log, "users", "add", "eve", "--role", "reader", "--password-stdin", env=creator,
                stdin="long enough password\n")  # fmt: skip
    assert 0 == added.returncode, added.stderr
    assert_literal(run(hostile_log, "keys", "list").stdout, "by user:ops[/][blink]")
    assert_literal(run(hostile_log, "users", "list").stdout, "by user:ops[/][blink]")
