"""The web UI inside the HTTP service: sign-in, what each role sees and may do, CSRF, sign-out, reads recorded once."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from tests.server.server_harness import ROLES, SETUP, Served, form_sign_in

JSON = {"accept": "application/json"}
PASSWORD = "correct horse"
READERS = frozenset({"reader", "auditor", "admin"})
AUDITORS = frozenset({"auditor", "admin"})

# (method, path, route template, who may use it, the read entry it records when allowed)
PAGES: list[tuple[str, str, str, frozenset[str], str | None]] = [
    ("GET", "/", "/", READERS, None),
    ("GET", "/console", "/console", READERS, "audit.search"),
    ("GET", "/console?action=file.*", "/console", READERS, "audit.search"),
    ("GET", "/timeline?target=file:f-1", "/timeline", READERS, "audit.timeline"),
    ("GET", "/entry/0", "/entry/{index}", READERS, "audit.view"),
    ("GET", "/entry/0/bundle", "/entry/{index}/bundle", READERS, "audit.prove"),
    ("GET", "/tail", "/tail", READERS, "audit.tail"),
    ("GET", "/how", "/how", READERS, None),
    ("GET", "/console/export?format=jsonl", "/console/export", AUDITORS, "audit.export"),
    ("POST", "/verify", "/verify", AUDITORS, "audit.verify"),
]


def _people(served: Served) -> None:
    for role in ROLES:
        served.accounts.add_user(f"{role}-1", role, PASSWORD, by=SETUP)
    served.trail.record({"action": "file.delete", "actor": "u-1", "targets": [{"type": "file", "id": "f-1"}]})


def _sign_in(client: TestClient, role: str) -> str:
    """Sign in as the user of ``role`` (a fresh session); returns the session's CSRF token."""
    client.cookies.clear()
    signed = client.post("/auth/login", json={"username": f"{role}-1", "password": PASSWORD})
    assert 200 == signed.status_code, signed.text
    token: str = signed.json()["csrf_token"]
    return token


def _denied(served: Served, method: str, template: str) -> list[Any]:
    return served.entries(outcome="denied", target=("route", f"{method} {template}"))


def test_every_page_for_every_role(serve_log: Any) -> None:
    """No session: sent to sign in; writer: 403; reader: reads only; auditor and admin: all. Refusals recorded."""
    served: Served = serve_log(auth_failure_limit=10_000)
    _people(served)
    client = served.client
    for method, path, template, allowed, read in PAGES:
        for role in (None, *ROLES):
            downloads = path.split("?")[0].endswith(("/bundle", "/export"))  # these answer in JSON
            token = _sign_in(client, role) if role else None
            if not role:
                client.cookies.clear()
            data = {"csrf_token": token} if method == "POST" and token else None
            refused_before = len(_denied(served, method, template))
            size_before = served.trail.size
            page = client.request(method, path, data=data, follow_redirects=False)
            where = (method, path, role, page.status_code)
            if role is None:
                if downloads:
                    assert 401 == page.status_code, where
                else:
                    expected = "/login" if method == "POST" else "/login?next=" + quote(path, safe="/")
                    assert (303, expected) == (page.status_code, page.headers.get("location")), where
                assert 401 == client.request(method, path, data=data, headers=JSON).status_code, where
                assert len(_denied(served, method, template)) == refused_before + 2, where
            elif role in allowed:
                assert page.status_code in (200, 303), where
                assert refused_before == len(_denied(served, method, template)), where
                looked = served.entries(after=size_before - 1)
                assert ([read] if read else []) == [e.action for e in looked], where  # recorded once, or not at all
                assert all(e.actor["id"] == f"{role}-1" and e.get("source") == "web" for e in looked), where
            else:
                assert 403 == page.status_code, where
                refusals = _denied(served, method, template)
                assert len(refusals) == refused_before + 1, where
                assert ("audit.access", f"{role}-1") == (refusals[-1].action, refusals[-1].actor["id"]), where
                if not downloads:
                    assert "text/html" in page.headers["content-type"], where
                    assert "Sign out" in page.text, where


@pytest.mark.parametrize("serve_log", ["sqlite"], indirect=True)
class TestWhatIsShown:
    def test_reader_sees_no_verify_or_export(self, serve_log: Any) -> None:
        """A reader's console and entry pages have neither the verify button nor the export links."""
        served: Served = serve_log()
        _people(served)
        _sign_in(served.client, "reader")
        for path in ("/console", "/entry/0"):
            html = served.client.get(path).text
            assert "Verify the whole log" not in html
            assert "/console/export" not in html
            assert "Signed in as <strong>reader-1</strong> (reader)" in html

    @pytest.mark.parametrize("role", ["auditor", "admin"])
    def test_auditor_sees_verify_and_export_with_the_csrf_token(self, serve_log: Any, role: str) -> None:
        served: Served = serve_log()
        _people(served)
        token = _sign_in(served.client, role)
        html = served.client.get("/console").text
        assert "Verify the whole log" in html
        assert "/console/export?format=jsonl" in html
        forms = re.findall(r'<form[^>]*method="post" action="([^"]+)">\s*<input type="hidden" name="csrf_token" '
                           r'value="([^"]+)">', html)  # fmt: skip
        assert {("/auth/logout", token), ("/verify", token)} == set(forms)

    def test_demo_pages_are_absent(self, serve_log: Any) -> None:
        served: Served = serve_log()
        _people(served)
        token = _sign_in(served.client, "admin")
        assert 404 == served.client.get("/try").status_code
        assert 404 == served.client.post("/try/tamper", data={"csrf_token": token}).status_code
        assert "Tamper" not in served.client.get("/console").text

    def test_api_key_is_not_a_ui_sign_in(self, serve_log: Any) -> None:
        """An API key, even an admin's, gets 401 from the UI, recorded, and never a page."""
        served: Served = serve_log()
        _people(served)
        response = served.client.get("/console", headers={**served.auth("admin"), **JSON})
        assert 401 == response.status_code
        assert "API key does not sign in" in response.json()["error"]
        refusal = _denied(served, "GET", "/console")[-1]
        assert ("admin-key", "service") == (refusal.actor["id"], refusal.actor["type"])

    def test_login_lands_on_the_console_or_next(self, serve_log: Any) -> None:
        served: Served = serve_log()
        _people(served)
        form = {"username": "reader-1", "password": PASSWORD}
        plain = form_sign_in(served.client, form, follow_redirects=False)
        assert (303, "/console") == (plain.status_code, plain.headers["location"])
        served.client.cookies.clear()
        back = form_sign_in(served.client, {**form, "next": "/entry/0"}, follow_redirects=False)
        assert (303, "/entry/0") == (back.status_code, back.headers["location"])
        assert "Entry #0" in served.client.get(back.headers["location"]).text

    def test_sign_in_page_uses_the_ui_stylesheet(self, serve_log: Any) -> None:
        """The sign-in page and the assets it needs are reachable without a session; API 404s stay JSON."""
        served: Served = serve_log()
        page = served.client.get("/login?next=/console")
        assert '<link rel="stylesheet" href="/static/app.css">' in page.text
        assert 'value="/console"' in page.text
        assert 200 == served.client.get("/static/app.css").status_code
        missing = served.client.get("/api/v1/nothing")
        assert (404, "not_found") == (missing.status_code, missing.json()["error"])

    def test_throttled_client_gets_429_from_the_ui(self, serve_log: Any) -> None:
        """A client over its failure limit is refused by the UI too, with Retry-After."""
        served: Served = serve_log(auth_failure_limit=1)
        for _ in range(2):
            served.client.get("/api/v1/entries", headers={"Authorization": "Bearer graven_bad_key"})
        throttled = served.client.get("/console", headers=JSON)
        assert 429 == throttled.status_code
        assert int(throttled.headers["retry-after"]) >= 1
        assert throttled.json()["error"].startswith("too many failed authentications")

    def test_events_stream_needs_a_reader(self, serve_log: Any) -> None:
        served: Served = serve_log()
        _people(served)
        assert 401 == served.client.get("/events").status_code
        _sign_in(served.client, "writer")
        assert 403 == served.client.get("/events").status_code


@pytest.mark.parametrize("serve_log", ["sqlite"], indirect=True)
class TestCsrfAndSignOut:
    def test_verify_needs_the_sessions_csrf_token(self, serve_log: Any) -> None:
        """Without the token, or with another session's, verification is refused (403, recorded)."""
        served: Served = serve_log()
        _people(served)
        other = _sign_in(served.client, "admin")
        token = _sign_in(served.client, "auditor")
        for data, headers in (({}, {}), ({"csrf_token": other}, {}), ({}, {"x-csrf-token": "nope"})):
            before = len(_denied(served, "POST", "/verify"))
            refused = served.client.post("/verify", data=data, headers={**headers, **JSON})
            assert 403 == refused.status_code
            assert "CSRF" in refused.json()["error"]
            assert before + 1 == len(_denied(served, "POST", "/verify"))
        assert [] == served.entries(action="audit.verify")
        by_header = served.client.post("/verify", headers={"x-csrf-token": token, **JSON})
        assert (200, True) == (by_header.status_code, by_header.json()["ok"])
        by_form = served.client.post("/verify", data={"csrf_token": token})
        assert 200 == by_form.status_code
        assert "The log is intact" in by_form.text
        assert 2 == len(served.entries(action="audit.verify", actor="auditor-1"))

    def test_cross_site_post_is_refused_even_with_the_token(self, serve_log: Any) -> None:
        served: Served = serve_log()
        _people(served)
        token = _sign_in(served.client, "auditor")
        refused = served.client.post("/verify", data={"csrf_token": token},
                                     headers={"origin": "http://evil.example", **JSON})  # fmt: skip
        assert 403 == refused.status_code
        assert [] == served.entries(action="audit.verify")

    def test_sign_out(self, serve_log: Any) -> None:
        """Sign-out needs the token; afterwards the UI sends the browser to sign in again."""
        served: Served = serve_log()
        _people(served)
        token = _sign_in(served.client, "reader")
        assert 403 == served.client.post("/auth/logout", data={}).status_code
        assert 200 == served.client.get("/console").status_code
        out = served.client.post("/auth/logout", data={"csrf_token": token}, follow_redirects=False)
        assert (303, "/login") == (out.status_code, out.headers["location"])
        again = served.client.get("/console", follow_redirects=False)
        assert (303, "/login?next=/console") == (again.status_code, again.headers["location"])
        assert [("reader-1", "success")] == [(e.actor["id"], e.outcome)
                                             for e in served.entries(action="session.logout")]  # fmt: skip
