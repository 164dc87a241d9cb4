"""Attacks on the HTTP service, over HTTP: forged ingest identity, lock-outs by other people's
guesses, sign-in CSRF. Clients sit behind a trusted proxy, so each request picks its address with
X-Forwarded-For as a real deployment would see it."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from graven.server.signin import LOGIN_COOKIE, SLOW_SIGN_IN
from tests.server.server_harness import SETUP, Served, form_sign_in

PROXY = ("10.0.0.2", 40000)
ATTACKER = "203.0.113.66"
PASSWORD = "correct horse"


@pytest.fixture
def behind_proxy(serve_log: Any) -> Served:
    """A served log (default limits: 10 failures per 300 s) behind a trusted proxy at 10.0.0.2."""
    served: Served = serve_log(trusted_proxies=("10.0.0.0/8",))
    served.client = TestClient(served.app, client=PROXY)
    served.accounts.add_user("frank", "reader", PASSWORD, by=SETUP)
    return served


def _from(ip: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    return {"X-Forwarded-For": ip, **(headers or {})}


def _suspects(served: Served) -> list[tuple[str, str, bool]]:
    return [(e.get("metadata")["subject"], e.get("metadata")["value"], e.get("metadata")["throttled"])
            for e in served.entries(action="auth.bruteforce_suspected")]  # fmt: skip


class TestKeysAreNotLockedOutByOthers:
    def test_wrong_secrets_for_the_writers_key_id_do_not_silence_the_writer(self, behind_proxy: Served) -> None:
        """`Bearer graven_<real id>_<wrong secret>` from other addresses: they get 429, the writer keeps 201."""
        served = behind_proxy
        key = served.keys["writer"]
        forged = key[:-4] + ("QQQQ" if not key.endswith("QQQQ") else "RRRR")

        def send(ip: str, text: str) -> int:
            headers = _from(ip, {"Authorization": f"Bearer {text}"})
            return served.client.post("/api/v1/events", json={"action": "a.b"}, headers=headers).status_code

        assert [401] * 10 + [429] * 2 == [send(ATTACKER, forged) for _ in range(12)]
        for i in range(4):  # more addresses join in: 40 more wrong secrets for the same key id
            assert {401} == {send(f"198.51.100.{i}", forged) for _ in range(10)}
        assert 201 == send("192.0.2.10", key)  # the writer, from its own address
        assert 429 == send(ATTACKER, key)  # a throttled address is throttled whatever it sends
        denied = served.entries(action="http.request", outcome="denied")
        assert 50 == len([e for e in denied if e.get("context").get("key_name") == "writer-key"])
        key_id = key.split("_")[1]
        assert [("ip", ATTACKER, True), ("key", key_id, False)] == sorted(_suspects(served))


class TestUsersAreNotLockedOutByOthers:
    def test_wrong_passwords_from_other_addresses_do_not_lock_the_user_out(self, behind_proxy: Served) -> None:
        """Ten wrong passwords for frank from one address, more from others: that address gets 429,
        frank signs in from a new address (JSON and the form) within a bounded delay; all of it recorded."""
        served = behind_proxy

        def guess(ip: str, password: str = "guess") -> int:  # noqa: S107 (a wrong password)
            return served.client.post("/auth/login", json={"username": "frank", "password": password},
                                      headers=_from(ip)).status_code  # fmt: skip

        assert [401] * 10 + [429] * 2 == [guess(ATTACKER) for _ in range(12)]
        assert [401] * 3 == [guess(f"198.51.100.{i}") for i in range(3)]  # past the limit for frank overall
        started = time.monotonic()
        assert 200 == guess("192.0.2.10", PASSWORD)
        assert time.monotonic() - started < SLOW_SIGN_IN + 5
        served.client.cookies.clear()
        form = form_sign_in(served.client, {"username": "frank", "password": PASSWORD},
                            headers=_from("192.0.2.11"), follow_redirects=False)  # fmt: skip
        assert (303, "/console") == (form.status_code, form.headers["location"])
        assert 429 == guess(ATTACKER, PASSWORD)
        attempts = served.entries(action="session.login")
        assert (13, 2) == (sum(e.outcome == "failure" for e in attempts), sum(e.outcome == "success" for e in attempts))
        assert [("ip", ATTACKER, True), ("user", "frank", False)] == sorted(_suspects(served))

    def test_the_sign_in_form_is_throttled_per_address_too(self, behind_proxy: Served) -> None:
        served = behind_proxy
        statuses = [form_sign_in(served.client, {"username": "frank", "password": "guess"},
                                 headers=_from(ATTACKER)).status_code for _ in range(11)]  # fmt: skip
        assert [401] * 10 + [429] == statuses
        ok = form_sign_in(served.client, {"username": "frank", "password": PASSWORD}, headers=_from("192.0.2.12"),
                          follow_redirects=False)  # fmt: skip
        assert 303 == ok.status_code


class TestRequestsWithoutCredentialsThrottleNobody:
    def test_anonymous_requests_do_not_get_the_visitors_address_throttled(self, behind_proxy: Served) -> None:
        """A page on another site can make a visitor's browser send requests without credentials (images,
        forms): they are refused, but never count against the visitor's address; past the limit they
        stop adding one entry each (one http.flood_suspected instead)."""
        served = behind_proxy
        visitor = _from("192.0.2.20")
        before = len(served.entries(outcome="denied"))
        for _ in range(15):
            assert 401 == served.client.get("/api/v1/entries", headers=visitor).status_code
            assert 405 == served.client.delete("/api/v1/entries/0", headers=visitor).status_code
            assert (
                403
                == served.client.post(
                    "/auth/login",
                    data={"username": "frank", "password": "x"},
                    headers={**visitor, "Origin": "https://evil.example"},
                ).status_code
            )
            assert 303 == served.client.get("/console", headers=visitor, follow_redirects=False).status_code
        assert 200 == served.client.get("/api/v1/entries", headers={**visitor, **served.auth("reader")}).status_code
        assert 200 == served.client.post("/auth/login", json={"username": "frank", "password": PASSWORD},
                                         headers=visitor).status_code  # fmt: skip
        flood = served.entries(action="http.flood_suspected")
        assert [("192.0.2.20", 11)] == [(e.targets[0]["id"], e.get("metadata")["failures"]) for e in flood]
        assert 10 + 1 == len(served.entries(outcome="denied")) - before
        assert [] == served.entries(action="auth.bruteforce_suspected")


class TestIngestedByComesFromTheCredential:
    @pytest.mark.parametrize("name", ["ingested_by", "Ingested_By", " ingested_by", "ingested-by", "ingestedBy",
                                      "INGESTED BY", "\uff49ngested_by"])  # fmt: skip
    def test_a_client_supplied_ingested_by_is_refused(self, served: Served, name: str) -> None:
        before = served.trail.store.size()
        response = served.client.post("/api/v1/events", headers=served.auth("writer"),
                                      json={"action": "user.login", "context": {name: "billing-service"}})  # fmt: skip
        assert 422 == response.status_code
        body = response.json()
        assert (f"context.{name}", "'billing-service'") == (body["field"], body["given"])
        assert "set by the server" in body["message"]
        assert before == served.trail.store.size()

    def test_a_batch_with_one_forged_event_writes_nothing(self, served: Served) -> None:
        before = served.trail.store.size()
        batch = [{"action": "a.b", "context": {"request_id": "r-1"}},
                 {"action": "a.b", "context": {"Ingested-By": "admin-key"}}]  # fmt: skip
        response = served.client.post("/api/v1/events", json=batch, headers=served.auth("writer"))
        assert (422, "events[1].context.Ingested-By") == (response.status_code, response.json()["field"])
        assert before == served.trail.store.size()

    def test_the_server_names_the_key_that_sent_it(self, served: Served) -> None:
        response = served.client.post(
            "/api/v1/events",
            headers=served.auth("writer"),
            json=[{"action": "a.b", "context": {"request_id": "r-1"}}, {"action": "a.c"}],
        )
        assert 201 == response.status_code
        got = [served.trail.get(i).get("context") for i in response.json()["indices"]]
        assert [{"request_id": "r-1", "ingested_by": "writer-key"}, {"ingested_by": "writer-key"}] == got


class TestSignInCsrf:
    @pytest.fixture
    def served(self, behind_proxy: Served) -> Served:
        return behind_proxy

    def _page(self, client: TestClient) -> str:
        page = client.get("/login")
        return page.text.split('name="login_token" value="', 1)[1].split('"', 1)[0]

    def _signed_in(self, served: Served) -> bool:
        return any(e.outcome == "success" for e in served.entries(action="session.login"))

    def test_text_plain_json_is_415(self, served: Served) -> None:
        """A cross-site page can post text/plain without CORS; the JSON sign-in refuses it."""
        body = '{"username": "frank", "password": "correct horse"}'
        for content_type in ("text/plain", "text/plain;charset=UTF-8", None):
            headers = {"Content-Type": content_type} if content_type else {}
            response = served.client.post("/auth/login", content=body, headers=headers)
            assert (415, "Content-Type") == (response.status_code, response.json()["field"]), content_type
            assert "set-cookie" not in response.headers
        assert not self._signed_in(served)
        assert [] == served.entries(action="session.login")
        json_type = {"Content-Type": "application/json; charset=utf-8"}
        ok = served.client.post("/auth/login", content=body, headers=json_type)
        assert 200 == ok.status_code

    @pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                                         {"Sec-Fetch-Site": "same-site"}, {"Origin": "null"},
                                         {"Origin": "http://testserver.evil.example"}, {}])  # fmt: skip
    def test_a_form_from_elsewhere_is_403_even_with_a_token(self, served: Served, headers: dict[str, str]) -> None:
        token = self._page(served.client)
        response = served.client.post(
            "/auth/login",
            headers=headers,
            follow_redirects=False,
            data={"username": "frank", "password": PASSWORD, "login_token": token},
        )
        assert (403, "cross_site") == (response.status_code, response.json()["error"])
        assert SESSION not in response.headers.get("set-cookie", "")
        assert not self._signed_in(served)
        refused = served.entries(action="http.request", outcome="denied")[-1]
        assert "POST /auth/login" == refused.targets[0]["id"]

    def test_cross_site_json_is_403(self, served: Served) -> None:
        response = served.client.post("/auth/login", json={"username": "frank", "password": PASSWORD},
                                      headers={"Origin": "https://evil.example"})  # fmt: skip
        assert 403 == response.status_code
        assert not self._signed_in(served)

    def test_a_form_without_the_pages_token_is_403(self, served: Served) -> None:
        same = {"Origin": "http://testserver"}
        form = {"username": "frank", "password": PASSWORD}
        assert 403 == served.client.post("/auth/login", data=form, headers=same).status_code
        token = self._page(served.client)
        wrong = served.client.post("/auth/login", data={**form, "login_token": "x" * 64}, headers=same)
        assert 403 == wrong.status_code
        served.client.cookies.delete(LOGIN_COOKIE)
        missing = served.client.post("/auth/login", data={**form, "login_token": token}, headers=same)
        assert (403, "csrf") == (missing.status_code, missing.json()["error"])
        other = TestClient(served.app)  # the attacker's own page visit: a good pair, but not the victim's cookie
        self._page(other)
        served.client.cookies.set(LOGIN_COOKIE, other.cookies[LOGIN_COOKIE])
        assert 403 == served.client.post("/auth/login", data={**form, "login_token": token}, headers=same).status_code
        assert not self._signed_in(served)

    @pytest.mark.parametrize(
        "headers",
        [
            {"Origin": "http://testserver"},
            {"Sec-Fetch-Site": "same-origin"},
            {"Origin": "http://testserver:80", "Sec-Fetch-Site": "same-origin"},
        ],
    )
    def test_the_pages_own_form_signs_in(self, served: Served, headers: dict[str, str]) -> None:
        token = self._page(served.client)
        assert token == self._page(served.client)  # one token per browser: two open tabs both work
        response = served.client.post(
            "/auth/login",
            headers=headers,
            follow_redirects=False,
            data={"username": "frank", "password": PASSWORD, "login_token": token},
        )
        assert 303 == response.status_code
        assert SESSION in response.headers["set-cookie"]


SESSION = "graven_session"
