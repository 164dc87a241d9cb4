"""The read-only Audit trail admin: search, filters, the Verified mark, and no way to change an entry."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

import graven.django
from tests.django.app.models import Article

pytestmark = pytest.mark.django_db(transaction=True)

LIST = "/admin/graven/auditentry/"


@pytest.fixture
def admin_client(log: Path, client: Client) -> Client:
    root = User.objects.create_superuser("root", "root@example.org", "pw")
    client.force_login(root)
    return client


def test_search_and_filter(admin_client: Client) -> None:
    Article.objects.create(title="findable needle")
    admin_client.get("/secret/")
    page = admin_client.get(LIST)
    assert 200 == page.status_code
    text = page.content.decode()
    assert "article.create" in text
    assert "http.request" in text
    assert "Nothing here can be changed or deleted" in text
    found = admin_client.get(LIST, {"q": "needle"}).content.decode()
    assert "article.create" in found
    assert "http.request" not in found
    denied = admin_client.get(LIST, {"outcome": "denied"}).content.decode()
    assert "http.request" in denied
    assert "article.create" not in denied
    assert graven.django.trail().query(action="audit.search").entries  # who looked is recorded


def test_entry_shows_its_diff_and_a_verified_mark(admin_client: Client) -> None:
    article = Article.objects.create(title="before")
    article.title = "after"
    article.save()
    (update,) = graven.django.trail().query(action="article.update").entries
    page = admin_client.get(f"{LIST}{update.index}/")
    text = page.content.decode()
    assert 200 == page.status_code
    assert "&#10004; Verified" in text
    assert "<del>before</del>" in text
    assert "<ins>after</ins>" in text
    bundle = admin_client.get(f"{LIST}{update.index}/bundle/")
    assert "application/json" == bundle["Content-Type"]
    views = graven.django.trail().query(action="audit.view").entries
    assert [update.index] == [v.get("metadata")["index"] for v in views]


def test_a_tampered_entry_is_not_marked_verified(admin_client: Client, log: Path) -> None:
    import sqlite3

    Article.objects.create(title="honest")
    (created,) = graven.django.trail().query(action="article.create").entries
    graven.django.trail().checkpoint()
    with sqlite3.connect(log / "trail.db") as db:
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            db.execute(f'DROP TRIGGER "{name}"')
        db.execute("UPDATE entries SET body = replace(body, 'honest', 'forged')")
    text = admin_client.get(f"{LIST}{created.index}/").content.decode()
    assert "Not verified" in text
    assert "&#10004; Verified" not in text


def test_nobody_can_add_change_or_delete_an_entry(admin_client: Client) -> None:
    Article.objects.create(title="x")
    size = graven.django.trail().size
    for url in (f"{LIST}add/", f"{LIST}0/delete/", f"{LIST}0/history/"):
        assert 404 == admin_client.get(url).status_code, url
        assert 404 == admin_client.post(url, {"post": "yes"}).status_code, url
    assert 302 == admin_client.post(f"{LIST}0/change/", {"index": 5}).status_code  # only a redirect to the view
    listing = admin_client.post(LIST, {"action": "delete_selected", "_selected_action": ["0", "1"]})
    assert 200 == listing.status_code  # a POST to the list is a read: no actions exist
    assert "session.login" == graven.django.trail().get(0).action
    assert size <= graven.django.trail().size
    index = admin_client.get("/admin/").content.decode()
    assert "Audit trail" in index
    assert f'href="{LIST}add/"' not in index


def test_staff_without_the_view_permission_sees_nothing(log: Path, client: Client) -> None:
    staff = User.objects.create_user("staff", "s@example.org", "pw", is_staff=True)
    client.force_login(staff)
    assert client.get(LIST).status_code in (403, 404)
    staff.user_permissions.add(Permission.objects.get(codename="view_auditentry"))
    staff = User.objects.get(pk=staff.pk)
    assert 200 == client.get(LIST).status_code


def test_tracked_change_pages_link_to_their_verified_history(admin_client: Client) -> None:
    article = Article.objects.create(title="linked")
    page = admin_client.get(f"/admin/testapp/article/{article.pk}/change/").content.decode()
    assert f'href="{LIST}?target=article%3A{article.pk}"' in page
    assert "History (verified)" in page
    history = admin_client.get(LIST, {"target": f"article:{article.pk}"}).content.decode()
    assert "article.create" in history
