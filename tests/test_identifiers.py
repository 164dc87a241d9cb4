"""Identifiers, names and numbers at every way in: what is refused, what is normalised, and that
nothing a client can send makes an intact log fail verification (on SQLite and on PostgreSQL).

- Identifiers (ids, types, tenant, change fields) refuse controls, line separators, zero-width
  characters and bidi controls, and are kept (and queried) in NFC.
- Names refuse U+0000 only; free text keeps every code point.
- Integers beyond ±(2^53-1), and floats RFC 8785 would write as such integers, are refused.
- The check of copied columns and target rows is exact for every code point, even for entries
  written before these rules (U+0000 in a target id, say).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graven
from graven.core import canonical, merkle
from graven.core.model import (
    INTEGER_RULE,
    REFUSED_IN_IDENTIFIERS,
    Prepared,
    identifier,
    load_json,
    safe_identifier,
)
from graven.errors import ValidationError
from graven.trail import Trail
from tests.pgserver import Server
from tests.server.server_harness import Served

COMPOSED = "Jos\u00e9"  # José, one code point for é
DECOMPOSED = "Jose\u0301"  # e followed by a combining acute accent
REFUSED = ["\x00", "\x01", "\x1f", "\x7f", "\x85", "\x9f", "\u061c", "\u200b", "\u200c", "\u200d", "\u200e",
           "\u200f", "\u2028", "\u2029", "\u202a", "\u202e", "\u2060", "\u2066", "\u2069", "\ufeff"]  # fmt: skip
IDENTIFIER_PLACES: dict[str, Callable[[str], dict[str, Any]]] = {
    "id": lambda v: {"id": v},
    "actor.id": lambda v: {"actor": {"type": "user", "id": v}},
    "actor.session": lambda v: {"actor": {"type": "user", "id": "u-1", "session": v}},
    "targets[0].type": lambda v: {"targets": [{"type": v, "id": "c-1"}]},
    "targets[0].id": lambda v: {"targets": [{"type": "customer", "id": v}]},
    "tenant": lambda v: {"tenant": v},
    "changes[0].field": lambda v: {"changes": [{"field": v, "old": 1, "new": 2}]},
    "changes[0].fingerprint": lambda v: {"changes": [{"field": "password", "redacted": True, "fingerprint": v}]},
}


def event(**fields: Any) -> dict[str, Any]:
    return {"action": "customer.update", "actor": {"type": "user", "id": "u-1"}, **fields}


@pytest.fixture(params=["sqlite", "postgres"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Trail]:
    """A fresh log on a real SQLite file or in a fresh schema on the real PostgreSQL server."""
    url: str | Path = tmp_path / "trail.db"
    if request.param == "postgres":
        pg: Server = request.getfixturevalue("pg")
        url = pg.schema_url("ident")
    graven.init(url, signing_key=tmp_path / "signing.key").close()
    with graven.open(url, signing_key=tmp_path / "signing.key", checkpoint_interval=0) as trail:
        yield trail


def legacy(trail: Trail, **fields: Any) -> int:
    """Append an entry as a version without these rules would have (the fields bypass validation)."""
    doc = dict(trail.prepare(event()).doc)
    doc.update(fields)
    leaf = canonical.encode_reference(doc)
    return trail._append([Prepared(doc, leaf, merkle.leaf_hash(leaf))])[0]


def assert_intact(trail: Trail) -> None:
    report = trail.verify()
    assert report.ok, report.message
    assert trail.store.derived_mismatch() is None


# --------------------------------------------------------------------------------------------
# Item 1 and 7: refused characters


class TestRefusedCharacters:
    @pytest.mark.parametrize("place", IDENTIFIER_PLACES)
    @pytest.mark.parametrize("char", REFUSED)
    def test_identifier_refuses(self, trail: Trail, place: str, char: str) -> None:
        """Each refused character, in each identifier, is a ValidationError naming the field, the rule
        (with the code point) and the value repr-escaped; nothing is written."""
        value = f"a{char}b"
        with pytest.raises(ValidationError) as info:
            trail.record(event(**IDENTIFIER_PLACES[place](value)))
        exc = info.value
        assert place == exc.field
        assert exc.rule.startswith("must not hold control characters, line separators, zero-width characters")
        assert f"(found U+{ord(char):04X} " in exc.rule
        assert exc.rule.endswith(" at position 1)")
        assert repr(value) == exc.given
        assert char not in str(exc)
        assert 0 == trail.size

    @pytest.mark.parametrize("place", ["actor.name", "targets[0].name", "actor.user_agent"])
    def test_names_refuse_only_nul(self, trail: Trail, place: str) -> None:
        """Names are display text: kept exactly as given (not even NFC), except that U+0000 is refused."""
        shown = f"{DECOMPOSED}\u200b\u202e\t\u2028!"

        def put(value: str) -> dict[str, Any]:
            if place == "targets[0].name":
                return event(targets=[{"type": "customer", "id": "c-1", "name": value}])
            return event(actor={"type": "user", "id": "u-1", place.removeprefix("actor."): value})

        index = trail.record(put(shown))
        stored = trail.query(limit=1).entries[0]
        kept = stored.targets[0]["name"] if place == "targets[0].name" else stored.actor[place.removeprefix("actor.")]
        assert (0, shown) == (index, kept)
        with pytest.raises(ValidationError) as info:
            trail.record(put("bad\x00name"))
        assert (place, "must not hold U+0000 (found at position 3)", "'bad\\x00name'") == (
            info.value.field, info.value.rule, info.value.given)  # fmt: skip
        assert 1 == trail.size

    def test_free_text_keeps_every_code_point(self, log: Trail) -> None:
        """reason, context, metadata and change values keep U+0000 and friends, and verify (both backends;
        PostgreSQL keeps the body as text, where U+0000 is the escape \\u0000, never in jsonb)."""
        text = "a\x00b\u2028c\u200bd\x1f\u202e"
        index = log.record(event(reason=text, context={text: text}, metadata={"m": [text]},
                                 changes=[{"field": "note", "old": text, "new": None}]))  # fmt: skip
        stored = log.query(limit=1).entries[0]
        assert (0, text, text, [text], text) == (
            index, stored.get("reason"), stored.get("context")[text], stored.get("metadata")["m"],
            stored.changes[0]["old"])  # fmt: skip
        assert_intact(log)

    def test_queries_with_refused_characters_find_older_entries(self, log: Trail) -> None:
        """The library's queries do not refuse such ids: they match nothing new, but still find what
        older versions stored (both backends; the HTTP service answers 422 for them instead)."""
        legacy(log, actor={"type": "user", "id": "a\x00b"}, tenant="t\u200b",
               targets=[{"type": "doc", "id": "d\x00"}])  # fmt: skip
        log.record(event(actor={"type": "user", "id": "a"}, targets=[{"type": "doc", "id": "d"}]))
        for kw in ({"actor": "a\x00b"}, {"tenant": "t\u200b"}, {"target": ("doc", "d\x00")}, {"target": "doc:d\x00"}):
            assert [0] == [e.index for e in log.query(**kw)], kw
        assert [] == log.query(actor="a\x00").entries
        assert_intact(log)

    def test_safe_identifier_is_always_an_identifier(self) -> None:
        """The stand-in recorded for an attempted name is readable, bounded and always valid."""
        assert "bob" == safe_identifier("bob")
        assert "a\\u0000b" == safe_identifier("a\x00b")
        assert "\\u0020" == safe_identifier(" ")
        long = safe_identifier("\x00" * 200)
        assert 200 == len(long)
        assert long != safe_identifier("\x00" * 199 + "\x01")

    @settings(max_examples=300, deadline=None)
    @given(st.text())
    def test_safe_identifier_property(self, text: str) -> None:
        stand_in = safe_identifier(text)
        assert identifier(stand_in, "x") == stand_in


# --------------------------------------------------------------------------------------------
# Item 1: the copied-column check is exact for every code point


class TestCopiedColumnsAreExact:
    def test_nul_in_a_target_id_written_before_the_rules_verifies(self, log: Trail) -> None:
        """Entries whose identifiers hold U+0000 (as older versions accepted) verify on both backends:
        SQLite's JSON functions end text at U+0000, so those entries are judged exactly in Python."""
        legacy(log, targets=[{"type": "doc", "id": "a\x00b"}])
        legacy(log, targets=[{"type": "d\x00c", "id": "a\x00b"}, {"type": "d", "id": "a\x00"},
                             {"type": "d", "id": "a"}])  # fmt: skip
        legacy(log, actor={"type": "user", "id": "u\x00\x01\u2028"}, tenant="t\x00", source="web",
               targets=[{"type": "x\u2028", "id": "\x1f\x7f\\\""}])  # fmt: skip
        log.record(event(targets=[{"type": "doc", "id": "plain"}]))
        assert_intact(log)

    def test_tampered_nul_target_rows_are_found(self, tmp_path: Path) -> None:
        """Exactness both ways: a target row of such an entry edited, removed or added is still found."""
        graven.init(tmp_path / "t.db", signing_key=tmp_path / "k").close()
        with graven.open(tmp_path / "t.db", signing_key=tmp_path / "k", checkpoint_interval=0) as trail:
            log_path = trail.store.path  # type: ignore[attr-defined]
            legacy(trail, targets=[{"type": "doc", "id": "a\x00b"}])
            legacy(trail, targets=[{"type": "d\x00c", "id": "a\x00b"}, {"type": "d", "id": "a"}])
            legacy(trail, tenant="t\x00")
            assert_intact(trail)
        conn = sqlite3.connect(log_path, isolation_level=None)
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.execute(f"DROP TRIGGER {name}")

        def first_bad() -> int | None:
            with graven.open(log_path, signing_key=tmp_path / "k") as trail:
                report = trail.verify()
                assert report.ok == (report.first_bad_index is None)
                return report.first_bad_index

        # The id cut at U+0000 ("d", "a") is another entry's target: a truncating check would match it.
        conn.execute("DELETE FROM entry_targets WHERE type = ?", ("d\x00c",))
        assert 1 == first_bad()
        conn.execute("INSERT INTO entry_targets VALUES (?, ?, ?)", ("d\x00c", "a\x00b", 1))
        assert first_bad() is None
        conn.execute("INSERT INTO entry_targets VALUES (?, ?, ?)", ("doc", "a\x00c", 0))
        assert 0 == first_bad()
        conn.execute("DELETE FROM entry_targets WHERE type = ? AND id = ?", ("doc", "a\x00c"))
        conn.execute("UPDATE entries SET tenant = 't' WHERE idx = 2")
        assert 2 == first_bad()
        conn.execute("UPDATE entries SET tenant = ? WHERE idx = 2", ("t\x00",))
        conn.execute("UPDATE entry_targets SET id = ? WHERE idx = 0", ("a\x00x",))
        assert 0 == first_bad()


_ANY_CHAR = st.one_of(
    st.characters(codec="utf-8"),  # any code point but lone surrogates
    st.sampled_from(["\x00", "\x1f", "\x7f", "\u2028", "\u2029", "\u0301", "\u0327", "\u200b", "\u202e", "\ufeff",
                     "\ufffe", "\uffff", "\U0010ffff", "\\", '"', "/", "e", "\u00e9"]),
)  # fmt: skip
_ANY_TEXT = st.text(_ANY_CHAR, min_size=1, max_size=12)
_IDENT = _ANY_TEXT.map(lambda s: REFUSED_IN_IDENTIFIERS.sub("", s)).filter(lambda s: s != "" and not s.isspace())
_NAME = _ANY_TEXT.map(lambda s: s.replace("\x00", "")).filter(lambda s: s != "" and not s.isspace())
PROPERTY = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip


class TestAnyUnicodeVerifies:
    @PROPERTY
    @given(kind=_IDENT, ident=_IDENT, actor=_IDENT, tenant=_IDENT, name=_NAME, text=_ANY_TEXT)
    def test_accepted_events_verify(self, log: Trail, kind: str, ident: str, actor: str, tenant: str, name: str,
                                    text: str) -> None:  # fmt: skip
        """Any event the rules accept, with arbitrary Unicode everywhere, verifies and is found by its
        identifiers in either normal form."""
        index = log.record(event(actor={"type": "user", "id": actor, "name": name}, tenant=tenant, reason=text,
                                 targets=[{"type": kind, "id": ident, "name": name}],
                                 metadata={text: text}))  # fmt: skip
        assert_intact(log)
        for form in ("NFC", "NFD"):
            found = log.query(target=(unicodedata.normalize(form, kind), unicodedata.normalize(form, ident)),
                              actor=unicodedata.normalize(form, actor), tenant=unicodedata.normalize(form, tenant),
                              after=index - 1, limit=1)  # fmt: skip
            assert [index] == [e.index for e in found]

    @PROPERTY
    @given(kind=_ANY_TEXT, ident=_ANY_TEXT, actor=_ANY_TEXT, tenant=_ANY_TEXT)
    def test_any_identifier_written_before_the_rules_verifies(self, log: Trail, kind: str, ident: str, actor: str,
                                                             tenant: str) -> None:  # fmt: skip
        """Arbitrary code points (U+0000 included) in stored identifiers never raise a false alarm."""
        legacy(log, actor={"type": "user", "id": actor}, tenant=tenant, targets=[{"type": kind, "id": ident}])
        assert_intact(log)


# --------------------------------------------------------------------------------------------
# Item 7: NFC


class TestNormalForm:
    def test_identifiers_are_stored_in_nfc(self, log: Trail) -> None:
        """A decomposed identifier is stored composed; names are stored as given."""
        log.record(event(id=f"evt-{DECOMPOSED}", actor={"type": "user", "id": DECOMPOSED, "name": DECOMPOSED},
                         targets=[{"type": f"t{DECOMPOSED}", "id": DECOMPOSED, "name": DECOMPOSED}],
                         tenant=DECOMPOSED, changes=[{"field": DECOMPOSED, "new": DECOMPOSED}]))  # fmt: skip
        doc = log.query(limit=1).entries[0].data
        assert (f"evt-{COMPOSED}", COMPOSED, DECOMPOSED) == (doc["id"], doc["actor"]["id"], doc["actor"]["name"])
        assert {"type": f"t{COMPOSED}", "id": COMPOSED, "name": DECOMPOSED} == doc["targets"][0]
        assert (COMPOSED, COMPOSED, DECOMPOSED) == (doc["tenant"], doc["changes"][0]["field"], doc["changes"][0]["new"])
        assert_intact(log)

    @pytest.mark.parametrize(("recorded", "searched"), [(COMPOSED, DECOMPOSED), (DECOMPOSED, COMPOSED)])
    def test_either_spelling_finds_the_other(self, log: Trail, recorded: str, searched: str) -> None:
        """Queries by actor, target, target type and tenant, and history(), normalise like recording."""
        log.record(event(actor={"type": "user", "id": recorded}, tenant=recorded,
                         targets=[{"type": recorded, "id": recorded}]))  # fmt: skip
        log.record(event(targets=[{"type": "other", "id": "x"}]))
        for kw in ({"actor": searched}, {"tenant": searched}, {"target": (searched, searched)},
                   {"target": f"{searched}:{searched}"}, {"target_type": searched}):  # fmt: skip
            assert [0] == [e.index for e in log.query(**kw)], kw
        assert [0] == [e.index for e in log.history((searched, searched))]

    def test_same_id_in_other_spelling_is_the_same_event(self, trail: Trail) -> None:
        """The event id is an identifier too: both spellings name one event (idempotent)."""
        first = trail.record(event(id=f"e-{COMPOSED}"))
        assert first == trail.record(event(id=f"e-{DECOMPOSED}"))
        assert 1 == trail.size


# --------------------------------------------------------------------------------------------
# Item 6: numbers


class TestNumbers:
    @pytest.mark.parametrize(
        ("fields", "field"),
        [
            ({"metadata": {"n": 2**64 + 1}}, "metadata.n"),
            ({"context": {"a": [{"b": -(2**53)}]}}, "context.a[0].b"),
            ({"changes": [{"field": "f", "old": 1, "new": {"x": [2**70]}}]}, "changes[0].new.x[0]"),
            ({"metadata": {"f": 1.8446744073709552e19}}, "metadata.f"),
        ],
    )
    def test_library_refuses_with_the_path(self, trail: Trail, fields: dict[str, Any], field: str) -> None:
        with pytest.raises(ValidationError) as info:
            trail.record(event(**fields))
        assert (field, INTEGER_RULE) == (info.value.field, info.value.rule)
        assert 0 == trail.size

    def test_json_text_keeps_integers_exact(self) -> None:
        """orjson reads integer literals past 64 bits as floats; load_json keeps them exact."""
        assert orjson.loads(b"18446744073709551617") == 1.8446744073709552e19  # the flaw it works around
        assert {"a": [18446744073709551617, -(10**30)], "s": "1234567890123456789012"} == load_json(
            b'{"a": [18446744073709551617, -1000000000000000000000000000000], "s": "1234567890123456789012"}'
        )
        assert [1.5, 10, True] == load_json("[1.5, 10, true]")

    def test_http_refuses_big_integers(self, served: Served) -> None:
        """2^64 + 1 in a posted event is 422 naming the field and the rule, and nothing is written."""
        body = b'{"action": "a.b", "actor": "u-1", "metadata": {"n": 18446744073709551617}}'
        before = served.trail.size
        headers = {**served.auth("writer"), "Content-Type": "application/json"}
        response = served.client.post("/api/v1/events", content=body, headers=headers)
        assert 422 == response.status_code, response.text
        error = response.json()
        assert ("metadata.n", INTEGER_RULE, "18446744073709551617") == (error["field"], error["rule"], error["given"])
        assert before == served.trail.size

    def test_cli_refuses_big_integers(self, tmp_path: Path) -> None:
        """`graven record` prints one line naming the field and the rule, and exits non-zero."""
        exe = str(Path(sys.executable).with_name("graven"))
        subprocess.run([exe, "init"], cwd=tmp_path, check=True, capture_output=True)
        stdin = '{"action": "a.b", "actor": "u", "context": {"n": [99999999999999999999999]}}'
        done = subprocess.run([exe, "record", "-"], cwd=tmp_path, capture_output=True, text=True, input=stdin)
        assert 0 != done.returncode
        assert [f"graven: events[0].context.n[0]: {INTEGER_RULE}; got 99999999999999999999999"] == (
            done.stderr.splitlines())  # fmt: skip
        done = subprocess.run([exe, "record", "--action", "a.b", "--actor", "u", "--metadata", '{"n": 1e19}'],
                              cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
        assert 0 != done.returncode
        assert [f"graven: metadata.n: {INTEGER_RULE}; got 1e+19"] == done.stderr.splitlines()


# --------------------------------------------------------------------------------------------
# Item 1 and 7 over HTTP: the three ways a client's text reaches an identifier


class TestOverHttp:
    def test_history_with_nul_is_422_and_nothing_recorded(self, served: Served) -> None:
        """GET /history?target=a%00:b is refused before the read is recorded; the log stays intact."""
        before = served.trail.size
        response = served.client.get("/api/v1/history", params={"target": "a\x00:b"}, headers=served.auth("reader"))
        assert 422 == response.status_code
        assert ("target", "'a\\x00'") == (response.json()["field"], response.json()["given"])
        for params in ({"actor": "u\x00"}, {"target": "a:\u200bb"}, {"tenant": "\u202e"}, {"target_type": "\x01"}):
            assert 422 == served.client.get("/api/v1/entries", params=params, headers=served.auth("reader")).status_code
        assert before == served.trail.size
        assert_intact(served.trail)

    def test_posted_event_with_lookalikes_is_422(self, served: Served) -> None:
        for target in ({"type": "user", "id": "admin\u200b"}, {"type": "user\x00", "id": "x"}):
            response = served.client.post("/api/v1/events", headers=served.auth("writer"),
                                          json={"action": "a.b", "actor": "u", "targets": [target]})  # fmt: skip
            assert 422 == response.status_code
            assert response.json()["field"].startswith("targets[0].")
        assert_intact(served.trail)

    def test_sign_in_with_nul_user_name_records_a_safe_form(self, serve_log: Any) -> None:
        """Failed sign-ins with U+0000 in the user name, past the limit: 401s then 429 (never 500, never
        422), the suspicion is recorded with the name escaped, and the log verifies."""
        served: Served = serve_log(auth_failure_limit=2, auth_failure_window=60)
        attempt = {"username": "ad\x00min", "password": "nope"}
        statuses = [served.client.post("/auth/login", json=attempt).status_code for _ in range(3)]
        assert [401, 401, 429] == statuses  # (this address is throttled)
        for i in range(3):  # from other addresses: the name alone is watched (recorded, never refused)
            other = TestClient(served.app, client=(f"203.0.113.{i}", 40000))
            assert 401 == other.post("/auth/login", json=attempt).status_code
        suspected = served.entries(action="auth.bruteforce_suspected")
        assert "user" in {e.get("metadata")["subject"] for e in suspected}
        users = {t["id"] for e in suspected for t in e.targets if t["type"] == "user"}
        assert {"ad\\u0000min"} == users
        assert_intact(served.trail)

    @pytest.mark.parametrize(("recorded", "searched"), [(COMPOSED, DECOMPOSED), (DECOMPOSED, COMPOSED)])
    def test_either_spelling_finds_the_other(self, served: Served, recorded: str, searched: str) -> None:
        response = served.client.post(
            "/api/v1/events",
            headers=served.auth("writer"),
            json={
                "action": "a.b",
                "actor": {"type": "user", "id": recorded},
                "targets": [{"type": "t", "id": recorded}],
            },
        )
        assert 201 == response.status_code
        (index,) = response.json()["indices"]
        for path, params in (("/api/v1/entries", {"actor": searched}), ("/api/v1/history", {"target": f"t:{searched}"}),
                             ("/api/v1/entries", {"target": f"t:{searched}"})):  # fmt: skip
            page = served.client.get(path, params=params, headers=served.auth("reader")).json()
            found = [e for e in page["entries"] if e["action"] == "a.b"]  # (reads of the history name it too)
            assert [index] == [e["index"] for e in found], path
            assert COMPOSED == found[0]["actor"]["id"]
