"""Model tracking through the outbox, on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.db import transaction

import graven.django
from graven.django import tracking
from graven.django.models import OutboxEvent
from graven.errors import ConfigError
from tests.django.app.models import Article, Customer, Tag, Untracked
from tests.django.conftest import aliases

pytestmark = pytest.mark.django_db(transaction=True)


def entries(action: str | None = None) -> list[Any]:
    page = graven.django.trail().query(action=action, limit=1000)
    return [dict(e.data) for e in page if not e.action.startswith("session.")]


def changes(entry: Any) -> dict[str, Any]:
    return {c["field"]: c for c in entry.get("changes", [])}


@pytest.mark.parametrize("alias", aliases())
def test_create_update_delete_record_changed_fields_only(log: Path, alias: str) -> None:
    article = Article.objects.using(alias).create(title="first", body="b")
    article.title = "second"
    article.save(using=alias)
    article.save(using=alias)  # nothing changed: no entry
    pk = article.pk
    article.delete(using=alias)
    found = entries()
    assert ["article.create", "article.update", "article.delete"] == [e["action"] for e in found]
    create, update, delete = found
    assert {"type": "article", "id": str(pk)} == create["targets"][0]
    assert {"title": {"field": "title", "new": "first"}} == {k: v for k, v in changes(create).items() if k == "title"}
    assert "updated_at" not in changes(create)  # excluded
    assert [{"field": "title", "old": "first", "new": "second"}] == update["changes"]
    assert "second" == changes(delete)["title"]["old"]
    assert {"type": "system", "id": "django"} == {k: create["actor"][k] for k in ("type", "id")}
    assert 0 == OutboxEvent.objects.using(alias).count()


@pytest.mark.parametrize("alias", aliases())
def test_rollback_records_nothing_and_savepoint_rollback_only_its_part(log: Path, alias: str) -> None:
    def fail() -> None:
        with transaction.atomic(using=alias):
            Article.objects.using(alias).create(title="gone")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail()
    with transaction.atomic(using=alias):
        Article.objects.using(alias).create(title="kept")
        try:
            with transaction.atomic(using=alias):
                Article.objects.using(alias).create(title="inner")
                raise RuntimeError("inner")
        except RuntimeError:
            pass
        assert [] == entries()  # nothing before the commit
    found = entries()
    assert ["kept"] == [changes(e)["title"]["new"] for e in found]
    assert 0 == OutboxEvent.objects.using(alias).count()


@pytest.mark.parametrize("alias", aliases())
def test_many_to_many_add_remove_clear_both_sides(log: Path, alias: str) -> None:
    article = Article.objects.using(alias).create(title="a")
    red, blue = Tag.objects.using(alias).create(name="red"), Tag.objects.using(alias).create(name="blue")
    article.tags.add(red, blue)
    article.tags.add(red)  # already there: nothing
    article.tags.remove(blue)
    blue.articles.add(article)  # the reverse side
    article.tags.clear()
    found = [e for e in entries() if ".tags." in e["action"]]
    assert ["article.tags.add", "article.tags.remove", "article.tags.add", "article.tags.clear"] == [
        e["action"] for e in found
    ]
    ids = sorted([red.pk, blue.pk])
    assert {"field": "tags", "old": [], "new": ids} == found[0]["changes"][0]
    assert {"field": "tags", "old": ids, "new": [red.pk]} == found[1]["changes"][0]
    assert {"field": "tags", "old": [red.pk], "new": ids} == found[2]["changes"][0]
    assert {"field": "tags", "old": ids, "new": []} == found[3]["changes"][0]
    assert {"type": "tag", "id": str(blue.pk)} in found[1]["targets"]
    assert all({"type": "article", "id": str(article.pk)} == e["targets"][0] for e in found)


@pytest.mark.parametrize("alias", aliases())
def test_redaction_names_and_secret_fields(log: Path, alias: str) -> None:
    customer = Customer.objects.using(alias).create(email="a@example.org", iban="DE00 1234", api_token="tok-1")
    customer.iban, customer.api_token, customer.credit_limit = "DE00 9999", "tok-2", Decimal("12.50")
    customer.save(using=alias)
    create, update = entries()
    assert "client.create" == create["action"]
    assert {"field": "iban", "redacted": True} == changes(create)["iban"]
    assert {"field": "api_token", "redacted": True} == changes(create)["api_token"]
    assert {"field": "iban", "redacted": True} == changes(update)["iban"]
    assert Decimal("12.50") == Decimal(str(changes(update)["credit_limit"]["new"]))
    text = (log / "trail.db").read_bytes()
    assert b"DE00" not in text
    assert b"tok-" not in text


@pytest.mark.parametrize("alias", aliases())
def test_queryset_update_bulk_create_bulk_update(log: Path, alias: str) -> None:
    made = Article.objects.using(alias).bulk_create([Article(title="x1"), Article(title="x2")])
    assert ["article.create", "article.create"] == [e["action"] for e in entries()]
    Article.objects.using(alias).filter(title="x1").update(views=5)
    made[0].title, made[1].title = "y1", "y2"
    Article.objects.using(alias).bulk_update(made, ["title"])
    Untracked.objects.using(alias).create(name="u")
    Untracked.objects.using(alias).update(name="v")
    updates = entries("article.update")
    assert [{"field": "views", "old": 0, "new": 5}] == updates[0]["changes"]
    assert {"x1": "y1", "x2": "y2"} == {changes(e)["title"]["old"]: changes(e)["title"]["new"] for e in updates[1:]}
    assert 5 == len(entries())


@pytest.mark.parametrize("alias", aliases())
def test_a_crash_after_commit_is_drained_exactly_once(log: Path, alias: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(using: str, docs: list[Any]) -> None:
        raise SystemExit("the process died after the commit")

    monkeypatch.setattr(tracking, "deliver", crash)
    with pytest.raises(SystemExit):
        Article.objects.using(alias).create(title="survives")
    monkeypatch.undo()
    assert [] == entries()
    assert 1 == OutboxEvent.objects.using(alias).count()
    assert 1 == graven.django.drain(alias)
    assert 0 == graven.django.drain(alias)
    assert ["article.create"] == [e["action"] for e in entries()]
    assert 0 == OutboxEvent.objects.using(alias).count()


def test_a_drained_event_recorded_again_is_not_appended_twice(log: Path) -> None:
    """The outbox row of an event already in the trail (deleted after a crash) appends nothing."""
    Article.objects.create(title="once")
    (entry,) = entries()
    doc = {k: v for k, v in entry.items() if k != "recorded_at"}

    OutboxEvent.objects.create(event_id=doc["id"], event=orjson.dumps(doc).decode(), created_at=0)
    assert 1 == graven.django.drain("default")
    assert 1 == len(entries())


def test_the_actor_comes_from_the_context(log: Path) -> None:
    with graven.django.trail().context(actor="u-17", ip="198.51.100.7", request_id="req-1"):
        Article.objects.create(title="mine")
    (entry,) = entries()
    assert "u-17" == entry["actor"]["id"]
    assert "198.51.100.7" == entry["actor"]["ip"]
    assert "req-1" == entry["context"]["request_id"]


@pytest.mark.parametrize("alias", aliases())
def test_a_value_set_as_text_equal_to_the_stored_one_is_no_change(log: Path, alias: str) -> None:
    customer = Customer.objects.using(alias).create(email="b@example.org", credit_limit="42.00")
    customer.email = "c@example.org"
    customer.save(using=alias)
    update = entries("client.update")[0]
    assert ["email"] == [c["field"] for c in update["changes"]]


def test_the_log_itself_on_postgresql(pg: Any, tmp_path: Path, settings: Any) -> None:
    """GRAVEN["LOG"] may name a PostgreSQL log too: the outbox stays on the application's side."""
    from graven.django import conf

    settings.GRAVEN = {"LOG": pg.schema_url("dj"), "SIGNING_KEY": str(tmp_path / "signing.key")}
    try:
        article = Article.objects.create(title="in postgres")
        article.title = "still in postgres"
        article.save()
        assert ["article.create", "article.update"] == [e["action"] for e in entries()]
        assert graven.django.trail().verify().ok
    finally:
        conf.reset()


def test_deferred_and_update_fields_record_only_what_was_saved(log: Path, django_assert_max_num_queries: Any) -> None:
    Article.objects.create(title="t", body="long body")
    article = Article.objects.only("title").get()
    article.title = "t2"
    with django_assert_max_num_queries(8):  # BEGIN, old row, UPDATE, outbox, COMMIT, BEGIN, DELETE, COMMIT
        article.save()
    article = Article.objects.get()
    article.title, article.body = "t3", "changed but not saved"
    article.save(update_fields=["title"])
    article = Article.objects.only("title").get()
    article.delete()
    first, second = entries("article.update")
    assert [{"field": "title", "old": "t", "new": "t2"}] == first["changes"]
    assert [{"field": "title", "old": "t2", "new": "t3"}] == second["changes"]
    (deleted,) = entries("article.delete")
    assert "long body" == changes(deleted)["body"]["old"]


def test_track_and_untrack_at_run_time(log: Path) -> None:
    tracking.track(Untracked, name="scratch")
    try:
        Untracked.objects.create(name="seen")
    finally:
        tracking.untrack(Untracked)
    Untracked.objects.create(name="unseen")
    assert ["scratch.create"] == [e["action"] for e in entries()]
    with pytest.raises(ConfigError, match="exclude names no field 'nope'"):
        tracking.track(Untracked, exclude=["nope"])
    tracking.untrack(Untracked)
