"""Tests for graven.core.redaction: no secret value may pass, everything else is untouched."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from graven.core import canonical
from graven.core.diff import diff
from graven.core.model import prepare
from graven.core.redaction import DEFAULT_PATTERNS, REDACTED, RedactionPolicy

POLICY = RedactionPolicy()
KEY = b"k" * 32

SECRET_BASES = ("password", "passwd", "secret", "token", "api_key", "private_key", "card_number", "cvv", "ssn", "pan")
SAFE_KEYS = ("name", "city", "count", "id", "email", "company", "items", "role", "span", "x")
SEPARATORS = ("_", "-", " ", "")


@st.composite
def secret_names(draw: st.DrawFn) -> str:
    """A secret-looking name: random case and separators, maybe with words around it."""
    words = draw(st.sampled_from(SECRET_BASES)).split("_")
    cased = [
        "".join(c.upper() if draw(st.booleans()) else c.lower() for c in w) if len(w) >= 4 else w.upper() for w in words
    ]
    sep = draw(st.sampled_from(SEPARATORS))
    if sep == "":  # camelCase: word boundaries come from the case change
        cased = [w.lower() for w in cased[:1]] + [w.capitalize() for w in cased[1:]]
    core = sep.join(cased)
    prefix = draw(st.sampled_from(("", "user", "new", "db")))
    suffix = draw(st.sampled_from(("", "hash", "value", "2")))
    join = draw(st.sampled_from(("_", "-", ".", " ")))
    return join.join(p for p in (prefix, core, suffix) if p)


# Secret values carry a marker that no safe value can contain; safe values never contain "~".
secret_values = st.text(alphabet="abc", max_size=6).map(lambda s: f"~S~{s}")
safe_scalars = st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(alphabet="xyz ", max_size=6)


def trees() -> st.SearchStrategy[Any]:
    return st.recursive(
        safe_scalars,
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.sampled_from(SAFE_KEYS), children, max_size=3)
            | st.dictionaries(secret_names(), secret_values | children, min_size=1, max_size=2)
            | st.builds(lambda a, b: {**a, **b}, st.dictionaries(st.sampled_from(SAFE_KEYS), children, max_size=2),
                        st.dictionaries(secret_names(), secret_values, max_size=2))
        ),
        max_leaves=25,
    )  # fmt: skip


def leaked(result: Any) -> bool:
    return b"~S~" in orjson.dumps(result)


@given(secret_names())
def test_secret_names_are_secret(name: str) -> None:
    assert POLICY.is_secret_key(name) or POLICY.is_secret(name)


@given(trees())
def test_mapping_never_lets_a_secret_through(value: Any) -> None:
    assert not leaked(POLICY.mapping(value))


@given(st.dictionaries(st.sampled_from(SAFE_KEYS), trees(), max_size=4))
def test_mapping_leaves_safe_values_unchanged(value: dict[str, Any]) -> None:
    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if not POLICY.is_secret_key(k)}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    assert strip(value) == strip(POLICY.mapping(value))


@given(trees(), trees(), st.sampled_from((None, KEY)))
def test_changes_never_let_a_secret_through(before: Any, after: Any, key: bytes | None) -> None:
    policy = RedactionPolicy(fingerprint_key=key)
    changes = diff({"root": before}, {"root": after})
    out = policy.changes(changes)
    assert not leaked(out)
    assert [c["field"] for c in changes] == [c["field"] for c in out]
    for c in out:
        assert c.get("redacted") is True or policy.mapping(c) == c


@given(st.dictionaries(secret_names(), secret_values, min_size=1), st.sampled_from((None, KEY)))
def test_secret_paths_are_redacted_whole(values: dict[str, Any], key: bytes | None) -> None:
    policy = RedactionPolicy(fingerprint_key=key)
    out = policy.changes(diff({"account": {}}, {"account": values}))
    assert out
    for c in out:
        assert {"field", "redacted"} | ({"fingerprint"} if key else set()) == set(c)
        assert c["redacted"] is True


def test_changes_shapes() -> None:
    changes = [
        {"field": "user.password", "old": "hunter2", "new": "correct horse"},
        {"field": "user.name", "old": "a", "new": "b"},
        {"field": "settings", "old": {"theme": "dark", "apiKey": "k1"}, "new": {"theme": "light", "apiKey": "k2"}},
        {"field": "card.cvv", "old": "123"},
        {"field": "old_token", "redacted": True, "fingerprint": "abcd"},
        {"field": "prior.secret", "redacted": True, "old": "leaky"},  # malformed: values dropped
    ]
    assert [
        {"field": "user.password", "redacted": True},
        {"field": "user.name", "old": "a", "new": "b"},
        {
            "field": "settings",
            "old": {"theme": "dark", "apiKey": REDACTED},
            "new": {"theme": "light", "apiKey": REDACTED},
        },
        {"field": "card.cvv", "redacted": True},
        {"field": "old_token", "redacted": True, "fingerprint": "abcd"},
        {"field": "prior.secret", "redacted": True},
    ] == POLICY.changes(changes)


def test_fingerprints() -> None:
    a = RedactionPolicy(fingerprint_key=KEY)
    b = RedactionPolicy(fingerprint_key=b"another key")
    change = {"field": "password", "old": "x", "new": {"b": 1, "a": [1, 2]}}
    [fa] = a.changes([change])
    expected = hmac.new(KEY, canonical.canonical({"a": [1, 2], "b": 1}), hashlib.sha256).hexdigest()[:16]
    assert expected == fa["fingerprint"]
    assert fa == a.changes([{"field": "password", "old": "y", "new": {"a": [1, 2], "b": 1.0}}])[0]
    assert fa["fingerprint"] != a.changes([{"field": "password", "new": "other"}])[0]["fingerprint"]
    assert fa["fingerprint"] != b.changes([change])[0]["fingerprint"]
    assert "fingerprint" not in RedactionPolicy().changes([change])[0]
    assert "fingerprint" not in a.changes([{"field": "password", "old": "gone"}])[0]


@given(st.text(max_size=10), st.text(max_size=10))
def test_fingerprint_equal_iff_values_equal(x: str, y: str) -> None:
    policy = RedactionPolicy(fingerprint_key=KEY)
    assert (policy.fingerprint(x) == policy.fingerprint(y)) == (x == y)  # no 64-bit collision in practice


def test_unfingerprintable_value_is_refused_without_echoing_it() -> None:
    policy = RedactionPolicy(fingerprint_key=KEY)
    with pytest.raises(ValueError, match="not JSON") as info:
        policy.changes([{"field": "password", "new": 2**60}])
    assert str(2**60) not in str(info.value)


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("Api-Key", True), ("apiKey", True), ("API_KEY", True), ("x-api-key", True),
        ("client_secret", True), ("refresh_token", True), ("Authorization", True), ("Set-Cookie", True),
        ("cardNumber", True), ("card_no", True), ("card_pan", True), ("PAN", True), ("cvv2", True),
        ("CVC", True), ("ssn", True), ("SSNLast4", True), ("user.password", True), ("a\\.password", True),
        ("company", False), ("classname", False), ("expand", False), ("author", False), ("name", False),
        ("address.city", False), ("", False),
    ],
)  # fmt: skip
def test_is_secret(name: str, secret: bool) -> None:
    assert secret == POLICY.is_secret(name)


def test_custom_patterns_and_validation() -> None:
    policy = RedactionPolicy(patterns=("iban", "pin"))
    assert policy.is_secret("account.IBAN")
    assert policy.is_secret("card.pin")
    assert not policy.is_secret("spinner")
    assert not policy.is_secret("password")
    assert "ssn" in DEFAULT_PATTERNS
    with pytest.raises(ValueError, match="fingerprint_key"):
        RedactionPolicy(fingerprint_key=b"")
    with pytest.raises(ValueError, match="patterns"):
        RedactionPolicy(patterns=("_",))
    assert "k" * 32 not in repr(RedactionPolicy(fingerprint_key=KEY))


def test_inputs_are_not_mutated() -> None:
    value = {"a": {"password": "p"}, "l": [{"token": "t"}]}
    changes = [{"field": "ctx", "new": value}]
    POLICY.mapping(value)
    POLICY.changes(changes)
    assert {"a": {"password": "p"}, "l": [{"token": "t"}]} == value


def test_redacted_changes_are_accepted_by_the_model() -> None:
    changes = RedactionPolicy(fingerprint_key=KEY).changes(
        diff({"password": "a", "name": "n", "prefs": {"token": "t"}}, {"password": "b", "name": "m", "prefs": {}})
    )
    prepared = prepare(
        {"action": "user.update", "actor": "u-1", "changes": changes},
        now=datetime(2024, 1, 1, tzinfo=UTC),
        new_id=lambda: "id-1",
    )
    assert changes == prepared.doc["changes"]
    assert not any(c in prepared.leaf for c in (b'"a"', b'"b"', b'"t"'))
