"""Who may do what over HTTP: the role matrix, API keys, sessions and CSRF, throttling, admin routes."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from graven.server import credentials
from graven.server.signin import SLOW_SIGN_IN
from tests.server.server_harness import ROLES, SECRET, Served, form_sign_in

ANY = frozenset(ROLES)
READERS = frozenset({"reader", "auditor", "admin"})
AUDITORS = frozenset({"auditor", "admin"})
ADMINS = frozenset({"admin"})

# (method, path as requested, route template, request kwargs, roles allowed)
ENDPOINTS: list[tuple[str, str, str, dict[str, Any], frozenset[str]]] = [
    ("POST", "/api/v1/events", "/api/v1/events", {"json": {"action": "a.b"}}, frozenset({"writer"})),
    ("GET", "/api/v1/entries", "/api/v1/entries", {}, READERS),
    ("GET", "/api/v1/entries/0", "/api/v1/entries/{index}", {}, READERS),
    ("GET", "/api/v1/history?target=user:u-1", "/api/v1/history", {}, READERS),
    ("GET", "/api/v1/state?target=user:u-1", "/api/v1/state", {}, READERS),
    ("GET", "/api/v1/checkpoint", "/api/v1/checkpoint", {}, READERS),
    ("GET", "/api/v1/consistency?old=0&new=1", "/api/v1/consistency", {}, READERS),
    ("GET", "/api/v1/tail?from=0&limit=1", "/api/v1/tail", {}, READERS),
    ("GET", "/api/v1/export", "/api/v1/export", {}, AUDITORS),
    ("POST", "/api/v1/verifications", "/api/v1/verifications", {}, AUDITORS),
    ("GET", "/api/v1/verifications/none", "/api/v1/verifications/{job_id}", {}, AUDITORS),
    ("GET", "/api/v1/keys", "/api/v1/keys", {}, ADMINS),
    ("GET", "/api/v1/forwarders", "/api/v1/forwarders", {}, ADMINS),
    ("POST", "/api/v1/keys", "/api/v1/keys", {"json": {"name": "made-{n}", "role": "reader"}}, ADMINS),
    ("POST", "/api/v1/keys/none/revoke", "/api/v1/keys/{key}/revoke", {}, ADMINS),
    ("GET", "/api/v1/users", "/api/v1/users", {}, ADMINS),
    (
        "POST",
        "/api/v1/users",
        "/api/v1/users",
        {"json": {"name": "p-{n}", "role": "reader", "password": "long enough"}},
        ADMINS,
    ),
    ("POST", "/api/v1/users/none/disable", "/api/v1/users/{name}/disable", {}, ADMINS),
    (
        "POST",
        "/api/v1/users/none/password",
        "/api/v1/users/{name}/password",
        {"json": {"password": "long enough"}},
        ADMINS,
    ),
    ("GET", "/auth/me", "/auth/me", {}, ANY),
]


def _fill(kwargs: dict[str, Any], n: int) -> dict[str, Any]:
    if "json" in kwargs:
        return {"json": {k: v.replace("{n}", str(n)) if isinstance(v, str) else v for k, v in kwargs["json"].items()}}
    return kwargs


def test_every_route_is_covered_by_the_matrix(served: Served) -> None:
    """Each route of the OpenAPI document appears in the matrix below (so a new route cannot skip it)."""
    document = served.client.get("/api/v1/openapi.json").json()
    listed = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    public = {("POST", "/auth/login"), ("POST", "/auth/logout"), ("GET", "/api/v1/schema/entry-v1.json")}
    covered = {(method, template) for method, _, template, _, _ in ENDPOINTS} | public
    assert listed == covered


def test_authorization_matrix(serve_log: Any) -> None:
    """Every role, and no credentials, against every route: allowed, 401 or 403; each refusal recorded."""
    served: Served = serve_log(auth_failure_limit=10_000)
    served.client.post("/api/v1/events", json={"action": "a.b", "actor": "u-1"}, headers=served.auth("writer"))
    outcomes: dict[tuple[str, str, str | None], int] = {}
    for n, (method, path, template, kwargs, allowed) in enumerate(ENDPOINTS):
        for role in (None, *ROLES):
            headers = served.auth(role) if role else {}
            denied_before = len(served.entries(outcome="denied", target=("route", f"{method} {template}")))
            status = served.client.request(method, path, headers=headers, **_fill(kwargs, n * 10 + len(outcomes)))
            outcomes[(method, path, role)] = status.status_code
            denied = served.entries(outcome="denied", target=("route", f"{method} {template}"))
            if role is None:
                assert 401 == status.status_code, (method, path, role)
            elif role in allowed:
                assert status.status_code not in (401, 403), (method, path, role, status.text)
                assert len(denied) == denied_before, (method, path, role)
                continue
            else:
                assert 403 == status.status_code, (method, path, role)
            assert len(denied) == denied_before + 1, (method, path, role)
            last = denied[-1]
            assert ("http.request" if role is None else "audit.access") == last.action
            assert (f"{role}-key" if role else None) == last.actor.get("id")
    assert len(ENDPOINTS) * 5 == len(outcomes)


class TestApiKeys:
    def test_key_is_stored_only_as_a_keyed_hash(self, served: Served) -> None:
        """The accounts table holds the HMAC of a key under the server secret, never the key."""
        key = served.keys["reader"]
        keys = served.accounts.keys()
        stored = next(k for k in keys if k.name == "reader-key")
        assert credentials.keyed_hash(SECRET, "apikey", key) == stored.key_hash
        assert key not in repr(keys)
        if served.backend == "sqlite":
            path = served.trail.store.path  # type: ignore[attr-defined]
            data = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
            assert key.encode() not in data
            assert key.split("_", 2)[2].encode() not in data  # the secret (which may itself hold "_")

    def test_revoked_and_forged_keys_are_refused_and_recorded(self, served: Served) -> None:
        """A revoked key, a wrong secret for a real key id and a malformed header each get 401, recorded."""
        reader = served.keys["reader"]
        key_id = credentials.api_key_id(reader)
        forged = reader[:-4] + ("AAAA" if not reader.endswith("AAAA") else "BBBB")
        assert 401 == served.client.get("/api/v1/entries", headers={"Authorization": f"Bearer {forged}"}).status_code
        assert 401 == served.client.get("/api/v1/entries", headers={"Authorization": "Basic abc"}).status_code
        served.accounts.revoke_key("reader-key", by=_admin())
        response = served.client.get("/api/v1/entries", headers=served.auth("reader"))
        assert 401 == response.status_code
        assert "revoked" in response.json()["message"]
        assert "Bearer" == response.headers["www-authenticate"]
        denied = served.entries(outcome="denied", action="http.request")
        assert [key_id, None, key_id] == [e.get("context").get("key_id") for e in denied]
        assert "reader-key" == denied[-1].get("context")["key_name"]
        assert ["reader-key"] == [e.targets[0]["name"] for e in served.entries(action="apikey.revoke")]

    def test_admin_manages_keys_over_the_api(self, served: Served) -> None:
        """An admin creates a key (shown once), the key works for its role, then is revoked by id."""
        made = served.client.post("/api/v1/keys", json={"name": "billing-service", "role": "writer"},
                                  headers=served.auth("admin"))  # fmt: skip
        assert 201 == made.status_code
        key = made.json()["key"]
        listed = served.client.get("/api/v1/keys", headers=served.auth("admin")).json()
        assert "key" not in {k for row in listed for k in row}
        headers = {"Authorization": f"Bearer {key}"}
        assert 201 == served.client.post("/api/v1/events", json={"action": "a.b"}, headers=headers).status_code
        again = served.client.post("/api/v1/keys", json={"name": "billing-service", "role": "reader"},
                                   headers=served.auth("admin"))  # fmt: skip
        assert 409 == again.status_code
        revoked = served.client.post(f"/api/v1/keys/{made.json()['id']}/revoke", headers=served.auth("admin"))
        assert revoked.json()["revoked_at"] is not None
        assert 401 == served.client.post("/api/v1/events", json={"action": "a.b"}, headers=headers).status_code
        created = served.entries(action="apikey.create")[-1]
        assert ("admin-key", "api", "writer") == (created.actor["id"], created.get("source"),
                                                  created.get("metadata")["role"])  # fmt: skip

    def test_bad_key_names_and_roles_are_422(self, served: Served) -> None:
        for body, field in (({"name": "no spaces", "role": "reader"}, "name"), ({"name": "x", "role": "boss"}, "role")):
            response = served.client.post("/api/v1/keys", json=body, headers=served.auth("admin"))
            assert 422 == response.status_code
            assert field == response.json()["field"]


def _admin() -> Any:
    from graven.server.accounts.service import By

    return By({"type": "user", "id": "test-admin"}, "cli")


def _login(client: TestClient, name: str, password: str) -> Any:
    return client.post("/auth/login", json={"username": name, "password": password})


class TestSessions:
    def test_json_sign_in_cookie_and_csrf(self, served: Served) -> None:
        """Signing in sets a strict HttpOnly cookie; changes need the session's CSRF token."""
        served.accounts.add_user("alice", "auditor", "correct horse", by=_admin())
        response = _login(served.client, "alice", "correct horse")
        assert 200 == response.status_code
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
        assert "secure" not in cookie.lower()
        token = response.json()["csrf_token"]
        me = served.client.get("/auth/me").json()
        assert ("user", "alice", "auditor", token) == (me["kind"], me["name"], me["role"], me["csrf_token"])
        refused = served.client.post("/api/v1/verifications")
        assert (403, "csrf") == (refused.status_code, refused.json()["error"])
        assert 403 == served.client.post("/api/v1/verifications", headers={"X-CSRF-Token": "x" * 64}).status_code
        assert 202 == served.client.post("/api/v1/verifications", headers={"X-CSRF-Token": token}).status_code
        denied = served.entries(outcome="denied", actor="alice")
        assert 2 == len(denied)
        assert all("CSRF" in e.get("reason") for e in denied)
        assert 403 == served.client.post("/auth/logout").status_code
        assert 200 == served.client.post("/auth/logout", headers={"X-CSRF-Token": token}).status_code
        assert 401 == served.client.get("/auth/me").status_code
        actions = [e.action for e in served.entries(actor="alice")]
        assert ["session.login", "session.logout"] == [a for a in actions if a.startswith("session.")]

    def test_cookie_is_secure_over_tls(self, serve_log: Any) -> None:
        served: Served = serve_log(base_url="https://testserver")
        served.accounts.add_user("bob", "reader", "correct horse", by=_admin())
        assert "secure" in _login(served.client, "bob", "correct horse").headers["set-cookie"].lower()

    def test_form_sign_in_page(self, served: Served) -> None:
        """The sign-in page posts a form; success redirects to a local `next`, failure shows an error."""
        served.accounts.add_user("carol", "reader", "correct horse", by=_admin())
        page = served.client.get("/login")
        assert 200 == page.status_code
        assert 'name="password"' in page.text
        bad = form_sign_in(served.client, {"username": "carol", "password": "wrong one"})
        assert 401 == bad.status_code
        assert "wrong user name or password" in bad.text
        assert 'name="login_token"' in bad.text
        evil = form_sign_in(served.client, {"username": "carol", "password": "correct horse",
                                            "next": "//evil.example/"}, follow_redirects=False)  # fmt: skip
        assert (303, "/console") == (evil.status_code, evil.headers["location"])
        served.client.cookies.clear()
        good = form_sign_in(served.client, {"username": "carol", "password": "correct horse",
                                            "next": "/ui/entries"}, follow_redirects=False)  # fmt: skip
        assert (303, "/ui/entries") == (good.status_code, good.headers["location"])
        signed = served.client.get("/login")
        assert "Signed in as <strong>carol</strong>" in signed.text
        attempts = served.entries(action="session.login", actor="carol")
        assert [("failure", "wrong password"), ("success", None), ("success", None)] == [
            (e.outcome, e.get("reason")) for e in attempts
        ]

    def test_sessions_expire_and_end_with_the_user(self, serve_log: Any) -> None:
        served: Served = serve_log(session_ttl=timedelta(seconds=1))
        served.accounts.add_user("dan", "reader", "correct horse", by=_admin())
        _login(served.client, "dan", "correct horse")
        assert 200 == served.client.get("/auth/me").status_code
        time.sleep(1.2)
        assert 401 == served.client.get("/auth/me").status_code
        served.accounts.session_ttl = timedelta(hours=1)
        _login(served.client, "dan", "correct horse")
        served.accounts.disable_user("dan", by=_admin())
        assert 401 == served.client.get("/auth/me").status_code
        assert 401 == _login(served.client, "dan", "correct horse").status_code

    def test_password_rules(self, served: Served) -> None:
        response = served.client.post("/api/v1/users", json={"name": "eve", "role": "reader", "password": "short"},
                                      headers=served.auth("admin"))  # fmt: skip
        assert (422, "password") == (response.status_code, response.json()["field"])
        stored = served.client.post("/api/v1/users", json={"name": "eve", "role": "reader", "password": "long enough"},
                                    headers=served.auth("admin"))  # fmt: skip
        assert 201 == stored.status_code
        user = {u.name: u for u in served.accounts.users()}["eve"]
        assert user.password_hash.startswith("scrypt$n=")
        assert "long enough" not in user.password_hash


class TestThrottling:
    def client_at(self, served: Served, ip: str) -> TestClient:
        return TestClient(served.app, client=(ip, 40000))

    def test_wrong_secrets_for_a_key_never_lock_out_its_owner(self, serve_log: Any) -> None:
        """Wrong secrets for a real key id throttle the addresses that sent them, never the key: its
        owner keeps working; the key is still reported once as a brute-force suspect (watched, not throttled)."""
        served: Served = serve_log(auth_failure_limit=3, auth_failure_window=60)
        forged = {"Authorization": "Bearer " + served.keys["admin"][:-4] + "QQQQ"}
        statuses = [self.client_at(served, f"203.0.113.{i}").get("/api/v1/keys", headers=forged).status_code
                    for i in range(5)]  # fmt: skip
        assert [401] * 5 == statuses
        owner = self.client_at(served, "198.51.100.1")
        assert 200 == owner.get("/api/v1/keys", headers=served.auth("admin")).status_code
        suspected = served.entries(action="auth.bruteforce_suspected")
        assert [("key", credentials.api_key_id(served.keys["admin"]), False)] == [
            (e.get("metadata")["subject"], e.get("metadata")["value"], e.get("metadata")["throttled"])
            for e in suspected]  # fmt: skip

    def test_unknown_key_id_is_throttled(self, serve_log: Any) -> None:
        """Guesses at one key id that does not exist (from many addresses) are throttled by that id."""
        served: Served = serve_log(auth_failure_limit=3, auth_failure_window=60)
        unknown = {"Authorization": "Bearer graven_0123456789ab_" + "A" * 43}
        statuses = [self.client_at(served, f"203.0.113.{i}").get("/api/v1/keys", headers=unknown).status_code
                    for i in range(5)]  # fmt: skip
        assert [401, 401, 401, 429, 429] == statuses
        retry = self.client_at(served, "203.0.113.9").get("/api/v1/keys", headers=unknown)
        assert 0 < int(retry.headers["retry-after"]) <= 60
        owner = self.client_at(served, "203.0.113.1")
        assert 200 == owner.get("/api/v1/keys", headers=served.auth("admin")).status_code
        suspected = served.entries(action="auth.bruteforce_suspected")
        assert [("key", "0123456789ab", True)] == [
            (e.get("metadata")["subject"], e.get("metadata")["value"], e.get("metadata")["throttled"])
            for e in suspected]  # fmt: skip

    def test_per_ip_then_window_ends(self, serve_log: Any) -> None:
        """One IP failing repeatedly is throttled (even with a good key) until its window ends."""
        served: Served = serve_log(auth_failure_limit=2, auth_failure_window=1.0)
        client = self.client_at(served, "198.51.100.7")
        bad = {"Authorization": "Bearer nonsense"}
        assert [401, 401, 429] == [client.get("/api/v1/entries", headers=bad).status_code for _ in range(3)]
        assert 429 == client.get("/api/v1/entries", headers=served.auth("reader")).status_code
        assert (
            200
            == self.client_at(served, "198.51.100.8").get("/api/v1/entries", headers=served.auth("reader")).status_code
        )
        time.sleep(1.1)
        assert 200 == client.get("/api/v1/entries", headers=served.auth("reader")).status_code
        suspected = served.entries(action="auth.bruteforce_suspected")
        assert [("ip", "198.51.100.7")] == [(e.get("metadata")["subject"], e.get("metadata")["value"])
                                            for e in suspected]  # fmt: skip
        assert "198.51.100.7" == suspected[0].actor["ip"]

    def test_per_user_and_address(self, serve_log: Any) -> None:
        """Wrong passwords for one user throttle that user from that address (and the address); from
        another address the user's correct password still works."""
        served: Served = serve_log(auth_failure_limit=2, auth_failure_window=60)
        served.accounts.add_user("frank", "reader", "correct horse", by=_admin())
        here = self.client_at(served, "192.0.2.1")
        assert [401, 401, 429] == [_login(here, "frank", "guess").status_code for _ in range(3)]
        assert 429 == _login(here, "frank", "correct horse").status_code
        assert 200 == _login(self.client_at(served, "192.0.2.2"), "frank", "correct horse").status_code
        suspected = served.entries(action="auth.bruteforce_suspected")
        assert [("ip", "192.0.2.1", True)] == [(e.get("metadata")["subject"], e.get("metadata")["value"],
                                                e.get("metadata")["throttled"]) for e in suspected]  # fmt: skip

    def test_guesses_from_many_addresses_never_lock_a_user_out(self, serve_log: Any) -> None:
        """Ten wrong passwords for a user from ten addresses: the user's correct password from a new
        address still signs in (slowed by at most SLOW_SIGN_IN); the attack is recorded, not throttled."""
        served: Served = serve_log(auth_failure_limit=3, auth_failure_window=60)
        served.accounts.add_user("frank", "reader", "correct horse", by=_admin())
        statuses = [_login(self.client_at(served, f"192.0.2.{i}"), "frank", "guess").status_code for i in range(10)]
        assert [401] * 10 == statuses
        started = time.monotonic()
        assert 200 == _login(self.client_at(served, "198.51.100.99"), "frank", "correct horse").status_code
        assert SLOW_SIGN_IN <= time.monotonic() - started < SLOW_SIGN_IN + 5
        suspected = served.entries(action="auth.bruteforce_suspected")
        assert [("user", "frank", False)] == [(e.get("metadata")["subject"], e.get("metadata")["value"],
                                               e.get("metadata")["throttled"]) for e in suspected]  # fmt: skip
        assert "user" == suspected[0].targets[0]["type"]


@pytest.mark.parametrize("body", [{"username": "x"}, {"username": 5, "password": "p"}, [1, 2]])
def test_bad_login_bodies_are_422(served: Served, body: Any) -> None:
    assert 422 == served.client.post("/auth/login", json=body).status_code


def test_sign_in_page_escapes_what_it_echoes(served: Served) -> None:
    """A user name full of markup comes back escaped on the page."""
    page = form_sign_in(served.client, {"username": "<script>alert(1)</script>", "password": "x"})
    assert 401 == page.status_code
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
