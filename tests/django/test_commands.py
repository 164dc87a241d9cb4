"""The graven_* management commands, on the log the settings name (the CLI's behaviour)."""

from __future__ import annotations

import sqlite3
from io import StringIO
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

import graven.django
from graven.core.bundle import verify_bundle
from graven.core.note import Verifier
from tests.django.app.models import Article

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: Any) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_verify_log_prove(log: Path, tmp_path: Path) -> None:
    Article.objects.create(title="one")
    Article.objects.create(title="two")
    graven.django.trail().checkpoint()
    assert run("graven_verify").startswith("OK  ")
    assert '"ok":true' in run("graven_verify", "--json")
    table = run("graven_log", "--action", "article.*")
    assert "article.create" in table
    assert "article:1" in table or "article" in table
    lines = run("graven_log", "--json", "--limit", "1").splitlines()
    assert 1 == len(lines)
    assert "article.create" == orjson.loads(lines[0])["action"]
    bundle = orjson.loads(run("graven_prove", "1"))
    check = verify_bundle(bundle, [Verifier.from_text(graven.django.trail().verifier_key)])
    assert check.ok, check.message
    run("graven_prove", "0", "-o", str(tmp_path / "b.json"))
    assert 0 == orjson.loads((tmp_path / "b.json").read_bytes())["entry"]["index"]


def test_verify_names_the_tampered_entry(log: Path) -> None:
    Article.objects.create(title="honest")
    trail = graven.django.trail()
    trail.checkpoint()
    trail.close()
    with sqlite3.connect(log / "trail.db") as db:
        triggers = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
        for name, _ in triggers:
            db.execute(f'DROP TRIGGER "{name}"')
        db.execute("UPDATE entries SET body = replace(body, 'honest', 'forged')")
    from graven.django import conf

    conf.reset()
    with pytest.raises(CommandError, match=r"TAMPERED  first bad index 0 \(modified\)") as caught:
        run("graven_verify")
    assert 1 == caught.value.returncode


def test_errors_are_one_line(log: Path) -> None:
    with pytest.raises(CommandError) as caught:
        run("graven_prove", "99")
    assert "\n" not in str(caught.value)
    assert 2 == caught.value.returncode
    with pytest.raises(CommandError, match="--actor is required"):
        run("graven_forget", "customer:c-1")


def test_forget_is_recorded(log: Path) -> None:
    out = run("graven_forget", "customer:c-1", "--actor", "dpo", "--reason", "erasure request 7")
    assert out.startswith("forgot customer:c-1 (it had no key)")
    (entry,) = graven.django.trail().query(action="subject.forget").entries
    assert "dpo" == entry.actor["id"]
    assert "erasure request 7" == entry.get("reason")


def test_drain_command(log: Path) -> None:
    assert "recorded 0 waiting changes" in run("graven_drain", "--database", "default")
