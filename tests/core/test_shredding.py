"""Sealing personal values per data subject: round trips, erasure, and binding to the subject."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graven.core.shredding import ERASED, PersonalData, SubjectKey, is_sealed, open_entry, seal, seal_event, unseal
from graven.errors import ValidationError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


class Keys:
    def __init__(self) -> None:
        self.keys: dict[str, SubjectKey] = {}

    def key_for(self, subject: str) -> SubjectKey:
        return self.keys.setdefault(subject, SubjectKey(secrets.token_hex(4), secrets.token_bytes(32)))

    def lookup(self, subject: str, key_id: str) -> bytes | None:
        key = self.keys.get(subject)
        return key.key if key is not None and key.key_id == key_id else None


@given(json_values)
def test_a_sealed_value_opens_to_itself_and_hides_it(value: Any) -> None:
    keys = Keys()
    text = seal(value, "customer:c-1", keys.key_for("customer:c-1"))
    assert is_sealed(text)
    assert value == unseal(text, keys.lookup)
    del keys.keys["customer:c-1"]
    assert ERASED == unseal(text, keys.lookup)


def test_the_ciphertext_is_bound_to_its_subject() -> None:
    keys = Keys()
    key = keys.key_for("customer:a")
    text = seal("ada@example.org", "customer:a", key)
    keys.keys["customer:b"] = key  # the same key under another subject name
    moved = text.replace(text.split(".")[1], seal(1, "customer:b", key).split(".")[1])
    assert ERASED == unseal(moved, keys.lookup)
    assert "ada@example.org" not in text
    assert text != seal("ada@example.org", "customer:a", key)  # a fresh nonce every time


def doc(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "v": 1,
        "id": "e-1",
        "occurred_at": "2026-11-25T10:00:00.000000Z",
        "actor": {"type": "user", "id": "u-17", "name": "Dana Reyes"},
        "action": "customer.update",
        "targets": [{"type": "customer", "id": "c-1042", "name": "Ada Lovelace"}],
        "outcome": "success",
        "changes": [
            {"field": "email", "old": "ada@old.example", "new": "ada@new.example"},
            {"field": "credit_limit", "old": 100, "new": 500},
            {"field": "profile", "old": {"phone": "+44 1"}, "new": {"phone": "+44 2", "tier": "gold"}},
        ],
        "metadata": {"contact": {"email": "x@example.org"}, "plan": "pro"},
    }
    base.update(extra)
    return base


def test_seal_event_seals_personal_fields_only_and_opens_back() -> None:
    keys = Keys()
    original = doc()
    sealed = seal_event(original, PersonalData(), keys.key_for)
    assert original == doc()  # not mutated
    email, limit, profile = sealed["changes"]
    assert is_sealed(email["old"])
    assert is_sealed(email["new"])
    assert {"field": "credit_limit", "old": 100, "new": 500} == limit
    assert is_sealed(profile["new"]["phone"])
    assert "gold" == profile["new"]["tier"]
    assert is_sealed(sealed["metadata"]["contact"]["email"])
    assert "pro" == sealed["metadata"]["plan"]
    assert is_sealed(sealed["actor"]["name"])
    assert is_sealed(sealed["targets"][0]["name"])
    assert original == open_entry(sealed, keys.lookup)


def test_after_the_subject_is_forgotten_its_values_read_as_erased() -> None:
    keys = Keys()
    sealed = seal_event(doc(), PersonalData(), keys.key_for)
    del keys.keys["customer:c-1042"]
    opened = open_entry(sealed, keys.lookup)
    email, limit, profile = opened["changes"]
    assert {"field": "email", "old": ERASED, "new": ERASED, "erased": True} == email
    assert "erased" not in limit
    assert profile["erased"] is True
    assert "gold" == profile["new"]["tier"]
    assert ERASED == opened["targets"][0]["name"]
    assert "Dana Reyes" == opened["actor"]["name"]  # the actor is another subject, still known


def test_a_personal_value_without_a_subject_is_refused() -> None:
    keys = Keys()
    event = doc(targets=[{"type": "file", "id": "f-1"}], actor={"type": "service", "id": "billing"})
    with pytest.raises(ValidationError) as info:
        seal_event(event, PersonalData(), keys.key_for)
    assert "changes[0].old" == info.value.field
    assert "ada@" not in str(info.value)


def test_declaration_errors_name_the_field() -> None:
    with pytest.raises(ValidationError, match=r"personal\.fields"):
        PersonalData(fields=())
    with pytest.raises(ValidationError, match=r"personal\.subjects"):
        PersonalData(subjects=("",))
    assert PersonalData(fields=("E-Mail",)).is_personal("contact.email")
