"""Django tracking with the log in the application's own PostgreSQL database (``GRAVEN["SAME_DATABASE"]``):
events written into the log's outbox in the transaction of the change, no commit after it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connections, transaction

import graven.django
from graven.django import conf
from graven.django.models import OutboxEvent
from graven.errors import ConfigError
from tests.django.app.models import Article
from tests.pgserver import PG_URL, with_url

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "pg"])


@pytest.fixture
def same(tmp_path: Path, settings: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A log in a schema of the ``pg`` alias's database, named in GRAVEN with SAME_DATABASE = ["pg"]."""
    if "pg" not in django_settings.DATABASES:
        request.getfixturevalue("pg")  # no server: says why (a skip, or a failure on CI)
    schema = f"dj_same_{secrets.token_hex(4)}"
    database = connections["pg"].settings_dict["NAME"]
    settings.GRAVEN = {
        **django_settings.GRAVEN, "LOG": with_url(PG_URL, db=database, schema=schema),
        "SIGNING_KEY": str(tmp_path / "signing.key"), "SAME_DATABASE": ["pg"],
    }  # fmt: skip
    yield schema
    conf.reset()
    with connections["pg"].cursor() as cursor:
        cursor.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def pending(schema: str) -> int:
    with connections["pg"].cursor() as cursor:
        cursor.execute(f'SELECT count(*) FROM "{schema}".captured')
        return int(cursor.fetchone()[0])


def actions() -> list[str]:
    return [e.action for e in graven.django.trail().query(limit=100) if e.action.startswith("article.")]


def test_the_commit_is_the_only_commit(same: str, monkeypatch: pytest.MonkeyPatch) -> None:
    trail = graven.django.trail()
    writes: list[int] = []
    real = trail.store.write
    monkeypatch.setattr(trail.store, "write", lambda *a, **k: writes.append(1) or real(*a, **k))
    article = Article.objects.using("pg").create(title="first")
    article.title = "second"
    article.save(using="pg")
    assert writes == []
    assert (pending(same), OutboxEvent.objects.using("pg").count(), actions()) == (2, 0, [])
    assert graven.django.drain("pg") == 2
    assert actions() == ["article.create", "article.update"]
    assert trail.verify().ok


def test_a_rollback_leaves_nothing(same: str) -> None:
    def fail() -> None:
        with transaction.atomic(using="pg"):
            Article.objects.using("pg").create(title="gone")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail()
    Article.objects.using("pg").create(title="kept")
    assert pending(same) == 1
    graven.django.drain("pg")
    assert actions() == ["article.create"]


def test_other_aliases_keep_the_outbox(same: str) -> None:
    """SQLite's ``default`` is not SAME_DATABASE: its events go by graven_outbox, recorded after the commit."""
    Article.objects.using("default").create(title="on sqlite")
    assert (pending(same), actions()) == (0, ["article.create"])


def test_an_alias_that_is_not_the_logs_database_is_refused(same: str, settings: Any) -> None:
    settings.GRAVEN = {**settings.GRAVEN, "SAME_DATABASE": ["default"]}
    with pytest.raises(ConfigError, match="names 'default', a sqlite database"):
        Article.objects.using("default").create(title="x")
    settings.GRAVEN = {**settings.GRAVEN, "SAME_DATABASE": ["nope"]}
    with pytest.raises(ConfigError, match=r"GRAVEN\['SAME_DATABASE'\]: 'nope' is not a database alias"):
        conf.settings()
