"""Entry schema v1, declared once in graven.core.schema: the published JSON Schema, the shipped copy,
and the typed Entry all come from it."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from importlib import resources
from typing import Any

import jsonschema_rs
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graven.core import model, schema
from graven.core.model import Entry, prepare
from tests.core.test_fast_path import common_events, events

NOW = datetime(2026, 11, 26, 9, 30, 0, 250000, tzinfo=UTC)
VALIDATOR = jsonschema_rs.validator_for(schema.entry_json_schema())
FULL = {
    "action": "customer.plan.change",
    "actor": {"type": "user", "id": "u-17", "name": "Dana", "ip": "2001:DB8::1", "user_agent": "ua", "session": "s1"},
    "targets": [{"type": "customer", "id": 1042, "name": "ACME"}],
    "outcome": "denied",
    "reason": "ticket SUP-2231",
    "changes": [{"field": "plan", "old": "basic", "new": {"tier": 2.5}}, {"field": "password", "redacted": True}],
    "source": "web",
    "context": {"request_id": "r-1"},
    "tenant": "t-1",
    "metadata": {"n": [1, None, True]},
    "occurred_at": "2026-11-26T10:30:00+01:00",
}


def _stored(event: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(prepare(event, now=NOW, new_id=lambda: "id-1").leaf)  # type: ignore[no-any-return]


class TestPublishedSchema:
    def test_the_shipped_file_is_generated_from_the_definition(self) -> None:
        """graven/schemas/entry-v1.json is exactly what entry_json_schema() gives (regenerate it if not)."""
        shipped = resources.files("graven").joinpath("schemas/entry-v1.json").read_bytes()
        assert schema.entry_json_schema() == orjson.loads(shipped)

    def test_a_full_entry_validates(self) -> None:
        """An entry using every field, every kind of target id and change, validates."""
        stored = _stored(FULL)
        assert schema.FIELDS == set(stored)
        assert VALIDATOR.is_valid(stored)

    @settings(max_examples=200, deadline=None)
    @given(common_events())
    def test_every_everyday_entry_validates(self, event: dict[str, Any]) -> None:
        """Whatever the common shape holds, the stored entry validates."""
        assert VALIDATOR.is_valid(_stored(event))

    @settings(max_examples=300, deadline=None)
    @given(events())
    def test_any_accepted_event_validates(self, event: dict[Any, Any]) -> None:
        """Any generated event the log accepts (odd text, floats, NFC, nesting) is stored on the schema."""
        try:
            stored = _stored(copy.deepcopy(event))
        except model.ValidationError:
            return
        assert VALIDATOR.is_valid(stored), list(VALIDATOR.iter_errors(stored))[:1]

    @pytest.mark.parametrize(
        ("change", "path"),
        [
            ({"index": 3}, []),
            ({"v": 2}, ["v"]),
            ({"action": "login"}, ["action"]),
            ({"outcome": "ok"}, ["outcome"]),
            ({"recorded_at": "2026-11-26T09:30:00Z"}, ["recorded_at"]),
            ({"actor": {"type": "robot", "id": "r"}}, ["actor", "type"]),
            ({"targets": [{"type": "t", "id": "a\u200bb"}]}, ["targets", 0, "id"]),
            ({"changes": [{"field": "f"}]}, ["changes", 0]),
            ({"changes": [{"field": "f", "redacted": True, "old": 1}]}, ["changes", 0]),
            ({"source": "Web"}, ["source"]),
        ],
    )
    def test_off_schema_entries_are_refused(self, change: dict[str, Any], path: list[Any]) -> None:
        """A field the log would never store is refused, at its path."""
        stored = {**_stored(FULL), **change}
        errors = list(VALIDATOR.iter_errors(stored))
        assert any(path == list(error.instance_path)[: len(path)] for error in errors), errors

    def test_required_fields(self) -> None:
        """The fields every stored entry has are required; the optional ones are not."""
        required = set(schema.entry_json_schema()["required"])
        assert {"v", "id", "occurred_at", "recorded_at", "actor", "action", "targets", "outcome", "changes"} == required


class TestOneDefinition:
    def test_input_and_stored_fields(self) -> None:
        """What a caller may send is what is stored, less recorded_at (set by the log); the public
        Actor, Target, Change and Event classes have the schema's fields."""
        assert schema.FIELDS - {"recorded_at"} == schema.INPUT_FIELDS
        assert tuple(f.name for f in dataclasses.fields(model.Actor)) == schema.ACTOR_FIELDS
        assert tuple(f.name for f in dataclasses.fields(model.Target)) == schema.TARGET_FIELDS
        assert tuple(f.name for f in dataclasses.fields(model.Change)) == schema.CHANGE_FIELDS
        assert {f.name for f in dataclasses.fields(model.Event)} == schema.INPUT_FIELDS - {"v"}

    def test_entry_exposes_every_stored_field(self) -> None:
        """Entry has an attribute for each field of the schema, reading the stored value."""
        stored = _stored(FULL)
        entry = Entry(7, stored)
        for name in schema.FIELDS:
            value = getattr(entry, name)
            if name in ("occurred_at", "recorded_at"):
                assert stored[name] == value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            else:
                assert stored[name] == value, name

    def test_absent_optional_fields_read_as_none(self) -> None:
        """reason, source, context, tenant and metadata are None when the entry has none."""
        entry = Entry(0, _stored({"action": "a.b", "actor": "u"}))
        assert (None, None, None, None, None) == (
            entry.reason, entry.source, entry.context, entry.tenant, entry.metadata
        )  # fmt: skip
        assert 1 == entry.v

    def test_limits_come_from_the_schema(self) -> None:
        """The model's limits are the schema's (one definition), and so are its error messages."""
        with pytest.raises(model.ValidationError) as info:
            prepare({"action": "a.b", "actor": "u", "targets": [{"type": "t", "id": str(i)} for i in range(101)]},
                    now=NOW, new_id=lambda: "x")  # fmt: skip
        assert ("targets", f"must have at most {schema.MAX_TARGETS} items") == (info.value.field, info.value.rule)

    @settings(max_examples=100, deadline=None)
    @given(st.sampled_from(sorted(schema.INPUT_FIELDS - {"action", "actor"})))
    def test_an_unknown_field_is_named(self, name: str) -> None:
        """A misspelt field is refused by name with the schema's field list (never silently dropped)."""
        with pytest.raises(model.ValidationError) as info:
            prepare({"action": "a.b", "actor": "u", name + "_x": 1}, now=NOW, new_id=lambda: "x")
        assert name + "_x" == info.value.field
        assert ", ".join(sorted(schema.INPUT_FIELDS)) in info.value.rule


class TestTargetShorthands:
    @pytest.mark.parametrize(
        "fields",
        [
            {"target": ("file", "f-1")},
            {"target": "file:f-1"},
            {"target": {"type": "file", "id": "f-1"}},
            {"targets": ["file:f-1"]},
            {"targets": [("file", "f-1")]},
        ],
    )
    def test_record_accepts_target_like_action(self, fields: dict[str, Any]) -> None:
        """target=("file", id), target="file:f-1" and shorthand items in targets= name the same target."""
        event = model.event_from(action="file.delete", actor="u-1", **fields)
        assert [{"type": "file", "id": "f-1"}] == _stored(event)["targets"]

    def test_target_is_added_to_targets(self) -> None:
        """target= adds one more target after those in targets=."""
        event = model.event_from(action="a.b", actor="u", targets=[{"type": "t", "id": "1"}], target="file:7")
        assert [{"type": "t", "id": "1"}, {"type": "file", "id": "7"}] == _stored(event)["targets"]

    @pytest.mark.parametrize(("fields", "field"), [({"target": "file"}, "target"), ({"targets": ["x:1", ":2"]},
                                                   "targets[1]")])  # fmt: skip
    def test_a_malformed_shorthand_is_named(self, fields: dict[str, Any], field: str) -> None:
        """A shorthand without type, colon or id is refused naming where it was."""
        with pytest.raises(model.ValidationError) as info:
            model.event_from(action="a.b", actor="u", **fields)
        assert field == info.value.field


ZONES = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))])


class TestStoredTimes:
    @given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=ZONES))
    def test_the_stored_form_is_strftimes(self, moment: datetime) -> None:
        """format_time writes what strftime("%Y-%m-%dT%H:%M:%S.%fZ") writes, which the schema's pattern accepts."""
        text = model.format_time(moment, "t")
        assert moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") == text
        assert model.parse_time(text, "t") == text
