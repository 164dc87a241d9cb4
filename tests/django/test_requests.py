"""The middleware and the sign-in signals, driven through Django's test client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.auth.tokens import default_token_generator
from django.test import Client
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

import graven.django
from tests.django.app.models import Article

pytestmark = pytest.mark.django_db(transaction=True)


def entries(action: str | None = None) -> list[dict[str, Any]]:
    return [dict(e.data) for e in graven.django.trail().query(action=action, limit=1000)]


@pytest.fixture
def dana(log: Path) -> User:
    return User.objects.create_user("dana", "dana@example.org", "correct horse")


@pytest.mark.parametrize(
    ("url", "status", "reason"),
    [
        ("/secret/", 403, "PermissionDenied: needs articles.view_secret"),
        ("/forbidden/", 403, "HTTP 403 Forbidden"),
        ("/unauthorized/", 401, "HTTP 401 Unauthorized"),
    ],
)
def test_refusals_are_recorded_once_with_the_route(
    log: Path, client: Client, url: str, status: int, reason: str
) -> None:
    response = client.get(url, HTTP_USER_AGENT="probe/1.0", HTTP_X_REQUEST_ID="req-42")
    assert status == response.status_code
    assert "req-42" == response["X-Request-ID"]
    (entry,) = entries()
    assert "http.request" == entry["action"]
    assert "denied" == entry["outcome"]
    assert reason == entry["reason"]
    assert [{"type": "route", "id": f"GET {url}"}] == entry["targets"]
    assert {"type": "anonymous", "ip": "127.0.0.1", "user_agent": "probe/1.0"} == entry["actor"]
    assert "req-42" == entry["context"]["request_id"]
    assert url.strip("/") == entry["context"]["url_name"]
    assert entry["context"]["view"].endswith(url.strip("/").replace("unauthorized", "unauthorized"))


def test_a_hidden_object_is_a_denial_an_unknown_url_is_not(log: Path, client: Client) -> None:
    private = Article.objects.create(title="private notes")
    before = len(entries())
    assert 404 == client.get(f"/hidden/{private.pk}/").status_code
    assert 404 == client.get("/no/such/page/").status_code
    (entry,) = entries()[before:]
    assert "denied" == entry["outcome"]
    assert "GET /hidden/<int:pk>/" == entry["targets"][0]["id"]
    assert entry["reason"].startswith("Http404")


@pytest.mark.parametrize("url", ["/action-denied/", "/permission-in-action/"])
def test_a_denial_the_application_recorded_is_not_recorded_again(log: Path, client: Client, url: str) -> None:
    assert 403 == client.get(url).status_code
    (entry,) = entries()
    assert "report.export" == entry["action"]
    assert "denied" == entry["outcome"]


def test_changes_in_a_request_name_the_user_ip_session_and_route(dana: User, client: Client) -> None:
    article = Article.objects.create(title="draft")
    client.force_login(dana)
    session_key = client.session.session_key
    response = client.post(
        f"/articles/{article.pk}/edit/", {"title": "final"}, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="203.0.113.9"
    )
    assert 200 == response.status_code
    (entry,) = entries("article.update")
    actor = entry["actor"]
    assert {"type": "user", "id": str(dana.pk), "name": "dana", "ip": "203.0.113.9"} == {
        k: actor[k] for k in ("type", "id", "name", "ip")
    }
    assert 16 == len(actor["session"])
    assert session_key not in str(entry)
    assert "/articles/<int:pk>/edit/" == entry["context"]["route"]
    assert "article-edit" == entry["context"]["url_name"]
    assert "web" == entry["source"]


def test_x_forwarded_for_is_ignored_from_an_untrusted_peer(log: Path, client: Client) -> None:
    client.get("/secret/", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    (entry,) = entries()
    assert "192.0.2.1" == entry["actor"]["ip"]


def test_sign_in_and_out(dana: User, client: Client) -> None:
    response = client.post("/accounts/login/", {"username": "dana", "password": "correct horse"})
    assert 302 == response.status_code
    client.post("/accounts/logout/")
    login, logout = entries("session.*")
    assert ("session.login", "success", str(dana.pk)) == (login["action"], login["outcome"], login["actor"]["id"])
    assert "127.0.0.1" == login["actor"]["ip"]
    assert ("session.logout", str(dana.pk)) == (logout["action"], logout["actor"]["id"])


def test_failed_sign_ins_keep_an_unknown_name_only_as_a_fingerprint(dana: User, client: Client, log: Path) -> None:
    client.post("/accounts/login/", {"username": "dana", "password": "wrong"})
    client.post("/accounts/login/", {"username": "Tr0ub4dor&3", "password": "x"})
    client.post("/accounts/login/", {"username": "Tr0ub4dor&3", "password": "y"})
    known, unknown, again = entries("session.login")
    assert ("failure", str(dana.pk)) == (known["outcome"], known["targets"][0]["id"])
    assert {"type": "user", "id": "unknown"} == unknown["targets"][0]
    assert unknown["metadata"]["username_fingerprint"] == again["metadata"]["username_fingerprint"]
    graven.django.trail().close()
    for stored in log.glob("trail.db*"):
        assert b"Tr0ub4dor" not in stored.read_bytes()


def test_password_change_and_reset_never_store_the_password(dana: User, client: Client) -> None:
    dana.set_password("new secret 1")
    dana.save()
    uid = urlsafe_base64_encode(force_bytes(dana.pk))
    token = default_token_generator.make_token(dana)
    form = client.get(f"/accounts/reset/{uid}/{token}/", follow=True)
    assert 200 == form.status_code
    done = client.post(form.redirect_chain[-1][0], {"new_password1": "n3w-Secret-2x", "new_password2": "n3w-Secret-2x"})
    assert 302 == done.status_code
    change, reset = entries("user.password.*")
    assert "user.password.change" == change["action"]
    assert "user.password.reset" == reset["action"]
    assert [{"field": "password", "redacted": True}] == reset["changes"]
    assert [{"type": "user", "id": str(dana.pk)}] == reset["targets"]
    dana.refresh_from_db()
    assert "n3w-Secret" not in str(entries())
    assert dana.password not in str(entries())
