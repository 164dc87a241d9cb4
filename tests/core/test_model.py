"""Tests for graven.core.model: schema v1 validation, normalisation and the leaf bytes."""

from __future__ import annotations

import hashlib
import math
import re
import string
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from graven.core import canonical
from graven.core.model import (
    ACTION_RE,
    ACTOR_TYPES,
    INTEGER_RULE,
    MAX_SAFE_INTEGER,
    OUTCOMES,
    REFUSED_IN_IDENTIFIERS,
    SCHEMA_VERSION,
    SOURCE_RE,
    Actor,
    Change,
    Entry,
    Event,
    Prepared,
    event_from,
    parse_time,
    prepare,
)
from graven.errors import ValidationError

# --------------------------------------------------------------------------------------------
# Helpers

NOW = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
NOW_TEXT = "2024-05-01T12:00:00.123456Z"
REQUIRED_KEYS = {
    "v",
    "id",
    "occurred_at",
    "recorded_at",
    "actor",
    "action",
    "targets",
    "outcome",
    "changes",
}


def _event(**fields: Any) -> dict[str, Any]:
    """A minimal valid event with ``fields`` laid over it."""
    return {"actor": "u-1", "action": "user.login", **fields}


def _prepare(event: dict[str, Any], new_id: Callable[[], str] = lambda: "ent-1") -> Prepared:
    return prepare(event, now=NOW, new_id=new_id)


def _rejected(event: dict[str, Any]) -> ValidationError:
    """The ValidationError ``prepare`` raises for ``event`` (fails if it raises anything else)."""
    with pytest.raises(ValidationError) as info:
        _prepare(event)
    return info.value


def _nested_dicts(levels: int) -> Any:
    """``levels`` objects nested inside each other, each holding the next under key "a"."""
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


def _nested_lists(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


# --------------------------------------------------------------------------------------------
# Top-level shape


class TestTopLevelFields:
    def test_unknown_field_is_rejected_by_name(self) -> None:
        """A field outside schema v1 is refused, naming that field and the schema."""
        exc = _rejected(_event(colour="red"))
        expected = "colour"
        assert expected == exc.field
        assert str(exc).startswith("colour: is not a field of schema v1 (")
        assert "action, actor, changes" in str(exc)

    def test_first_unknown_field_in_sorted_order_is_reported(self) -> None:
        """With several unknown fields the alphabetically first one is reported."""
        exc = _rejected(_event(zeta=1, alpha=2))
        expected = "alpha"
        assert expected == exc.field

    @pytest.mark.parametrize("version", [2, 0, "1", True, None])
    def test_wrong_schema_version_is_rejected(self, version: Any) -> None:
        """``v`` other than the integer 1 (even True or "1") is refused, showing what was given."""
        exc = _rejected(_event(v=version))
        expected = "v"
        assert expected == exc.field
        assert f"v: must be 1 (the only schema version); got {version!r}" == str(exc)

    def test_explicit_version_one_is_accepted(self) -> None:
        """``v: 1`` given explicitly is the same as leaving it out."""
        assert _prepare(_event()).leaf == _prepare(_event(v=1)).leaf

    def test_naive_now_is_rejected_as_recorded_at(self) -> None:
        """The clock must be timezone-aware; a naive ``now`` is refused as recorded_at."""
        with pytest.raises(ValidationError) as info:
            prepare(_event(), now=datetime(2024, 5, 1, 12), new_id=lambda: "x")
        expected = "recorded_at"
        assert expected == info.value.field
        assert "must be timezone-aware" in str(info.value)


# --------------------------------------------------------------------------------------------
# Actor


class TestActor:
    def test_missing_actor_is_rejected(self) -> None:
        """An event without an actor is refused with the actor rule."""
        event = _event()
        del event["actor"]
        exc = _rejected(event)
        expected = "actor"
        assert expected == exc.field
        assert "actor: is required (who did it" in str(exc)

    def test_none_actor_is_rejected_as_missing(self) -> None:
        """``actor: None`` counts as missing."""
        expected = "actor"
        assert expected == _rejected(_event(actor=None)).field

    @pytest.mark.parametrize(("actor", "shown"), [(5, "5"), (["u-1"], "list ['u-1']")])
    def test_non_object_actor_is_rejected(self, actor: Any, shown: str) -> None:
        """An actor that is neither an object, an Actor nor a string is refused, showing it."""
        exc = _rejected(_event(actor=actor))
        expected = "actor"
        assert expected == exc.field
        assert "must be an object such as" in str(exc)
        assert str(exc).endswith(f"; got {shown}")

    def test_unknown_actor_field_is_rejected_by_path(self) -> None:
        """A key outside the actor fields is refused, its path naming the key."""
        exc = _rejected(_event(actor={"type": "user", "id": "u-1", "role": "admin"}))
        expected = "actor.role"
        assert expected == exc.field
        assert "is not an actor field (type, id, name, ip, user_agent, session)" in str(exc)

    @pytest.mark.parametrize("kind", ["robot", "USER", 5, ""])
    def test_actor_type_outside_allowed_set_is_rejected(self, kind: Any) -> None:
        """actor.type must be one of the four kinds; the message lists them and shows the value."""
        exc = _rejected(_event(actor={"type": kind, "id": "u-1"}))
        expected = "actor.type"
        assert expected == exc.field
        assert f"actor.type: must be one of user, service, system, anonymous; got {kind!r}" == str(exc)

    @pytest.mark.parametrize("kind", ["user", "service"])
    def test_user_and_service_actors_need_an_id(self, kind: str) -> None:
        """A user or service actor without an id is refused at actor.id."""
        exc = _rejected(_event(actor={"type": kind, "name": "Ann"}))
        expected = "actor.id"
        assert expected == exc.field
        assert f"is required for a {kind} actor" in str(exc)

    @pytest.mark.parametrize("kind", ["system", "anonymous"])
    def test_system_and_anonymous_actors_need_no_id(self, kind: str) -> None:
        """System and anonymous actors are complete with only a type."""
        assert {"type": kind} == _prepare(_event(actor={"type": kind})).doc["actor"]

    def test_type_defaults_to_user(self) -> None:
        """An actor object without a type is a user."""
        expected = {"type": "user", "id": "u-9"}
        assert expected == _prepare(_event(actor={"id": "u-9"})).doc["actor"]

    def test_string_shorthand_is_a_user_id(self) -> None:
        """The shorthand "u-1" means {type: user, id: "u-1"}."""
        expected = {"type": "user", "id": "u-1"}
        assert expected == _prepare(_event(actor="u-1")).doc["actor"]

    def test_actor_dataclass_equals_dict(self) -> None:
        """An Actor dataclass is stored exactly like the equivalent dict, dropping None fields."""
        given = Actor(type="service", id="billing", user_agent="cron/1")
        expected = {"type": "service", "id": "billing", "user_agent": "cron/1"}
        assert expected == _prepare(_event(actor=given)).doc["actor"]

    def test_all_actor_fields_are_kept(self) -> None:
        """Every actor field survives validation unchanged (ip in its canonical form)."""
        actor = {
            "type": "user",
            "id": "u-1",
            "name": "Ann",
            "ip": "192.0.2.1",
            "user_agent": "curl/8",
            "session": "s-1",
        }
        assert actor == _prepare(_event(actor=actor)).doc["actor"]

    @pytest.mark.parametrize(
        ("given", "expected"),
        [
            ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
            ("2001:0db8:0000:0000:0000:ff00:0042:8329", "2001:db8::ff00:42:8329"),
            ("::1", "::1"),
            (" 192.0.2.1 ", "192.0.2.1"),
        ],
    )
    def test_ip_is_normalised(self, given: str, expected: str) -> None:
        """actor.ip is stored in Python's canonical form (IPv6 compressed and lower-case)."""
        doc = _prepare(_event(actor={"id": "u-1", "ip": given})).doc
        assert expected == doc["actor"]["ip"]

    @pytest.mark.parametrize("ip", ["999.1.1.1", "not-an-ip", "", "2001:db8::g", "10.0.0.1/24"])
    def test_bad_ip_is_rejected(self, ip: str) -> None:
        """An unparseable actor.ip is refused, showing the text given."""
        exc = _rejected(_event(actor={"id": "u-1", "ip": ip}))
        expected = "actor.ip"
        assert expected == exc.field
        assert f"actor.ip: must be an IPv4 or IPv6 address; got {ip!r}" == str(exc)

    def test_non_text_ip_is_rejected(self) -> None:
        """A non-string actor.ip (e.g. an int) is refused as not being text."""
        exc = _rejected(_event(actor={"id": "u-1", "ip": 3232235521}))
        expected = "actor.ip"
        assert expected == exc.field
        expected = "actor.ip: must be an IPv4 or IPv6 address as text; got 3232235521"
        assert expected == str(exc)


# --------------------------------------------------------------------------------------------
# Names and plain strings


def _with_name(path: str, value: Any) -> dict[str, Any]:
    """A valid event whose field at ``path`` holds ``value``."""
    if path.startswith("actor."):
        return _event(actor={"type": "user", "id": "u-1", path.removeprefix("actor."): value})
    if path.startswith("targets[0]."):
        target = {"type": "customer", "id": "c-1", path.removeprefix("targets[0]."): value}
        return _event(targets=[target])
    if path == "changes[0].field":
        return _event(changes=[{"field": value, "old": 1}])
    if path == "changes[0].fingerprint":
        return _event(changes=[{"field": "password", "redacted": True, "fingerprint": value}])
    return _event(**{path: value})


# (path, the longest name accepted there)
_LIMITS = [
    ("id", 200),
    ("tenant", 200),
    ("actor.id", 200),
    ("actor.name", 200),
    ("actor.session", 200),
    ("actor.user_agent", 1024),
    ("targets[0].type", 200),
    ("targets[0].id", 200),
    ("targets[0].name", 200),
    ("changes[0].field", 1000),
    ("changes[0].fingerprint", 200),
    ("source", 64),
]


class TestNames:
    @pytest.mark.parametrize(("path", "limit"), _LIMITS)
    def test_name_at_its_limit_is_accepted(self, path: str, limit: int) -> None:
        """A name exactly at its length limit is accepted and kept."""
        _prepare(_with_name(path, "a" * limit))

    @pytest.mark.parametrize(("path", "limit"), _LIMITS)
    def test_name_over_its_limit_is_rejected(self, path: str, limit: int) -> None:
        """A name one character over its limit is refused, stating the limit and the length."""
        exc = _rejected(_with_name(path, "a" * (limit + 1)))
        assert path == exc.field
        assert f"{path}: must be at most {limit} characters; got <{limit + 1} characters>" == str(exc)

    def test_name_limit_counts_characters_not_bytes(self) -> None:
        """Names are limited in characters: 200 four-byte characters are still accepted."""
        doc = _prepare(_with_name("actor.name", "\U0001f600" * 200)).doc
        expected = "\U0001f600" * 200
        assert expected == doc["actor"]["name"]

    @pytest.mark.parametrize(
        "path",
        [
            "id",
            "tenant",
            "action",
            "source",
            "actor.id",
            "actor.name",
            "actor.session",
            "actor.user_agent",
            "targets[0].type",
            "targets[0].id",
            "targets[0].name",
            "changes[0].field",
            "changes[0].fingerprint",
        ],
    )
    @pytest.mark.parametrize("blank", ["", " ", "\t\n ", "\u3000"])
    def test_empty_or_whitespace_name_is_rejected(self, path: str, blank: str) -> None:
        """Empty and all-whitespace names are refused as empty, showing what was given."""
        exc = _rejected(_with_name(path, blank))
        assert path == exc.field
        assert f"{path}: must not be empty; got {blank!r}" == str(exc)

    @pytest.mark.parametrize(
        ("path", "value"),
        [("actor.name", 5), ("tenant", ["t"]), ("targets[0].type", None), ("id", 7)],
    )
    def test_non_string_name_is_rejected(self, path: str, value: Any) -> None:
        """A name that is not a string is refused as such."""
        exc = _rejected(_with_name(path, value))
        assert path == exc.field
        assert f"{path}: must be a string; " in str(exc)

    @pytest.mark.parametrize("path", ["id", "tenant", "actor.id", "actor.name", "targets[0].id", "changes[0].field"])
    def test_lone_surrogate_in_name_is_rejected(self, path: str) -> None:
        """A name holding a lone surrogate is refused at its own path."""
        exc = _rejected(_with_name(path, "ab\ud800"))
        assert path == exc.field
        assert f"{path}: must be valid Unicode (no lone surrogates); got 'ab\\ud800'" == str(exc)


class TestAction:
    def test_missing_action_is_rejected(self) -> None:
        """An event without an action is refused with an example of the pattern."""
        event = _event()
        del event["action"]
        exc = _rejected(event)
        expected = "action"
        assert expected == exc.field
        assert "action: is required (a dotted noun.verb such as user.password.change)" in str(exc)

    def test_action_at_limit_is_accepted(self) -> None:
        """An action of exactly 200 characters is accepted."""
        action = "a." + "b" * 198
        assert action == _prepare(_event(action=action)).doc["action"]

    def test_action_over_limit_is_rejected(self) -> None:
        """An action of 201 characters is refused, stating the 200-character limit."""
        exc = _rejected(_event(action="a." + "b" * 199))
        expected = "action"
        assert expected == exc.field
        expected = "action: must be at most 200 characters; got <201 characters>"
        assert expected == str(exc)

    @pytest.mark.parametrize(
        "action",
        [
            "login",
            "user..login",
            ".user.login",
            "user.login.",
            "user login.x",
            "user.lögin",
            "user/login.x",
            "user.login\n",
        ],
    )
    def test_action_not_matching_pattern_is_rejected(self, action: str) -> None:
        """An action that is not dotted words of [A-Za-z0-9_-] is refused, showing it."""
        exc = _rejected(_event(action=action))
        expected = "action"
        assert expected == exc.field
        assert "action: must be dotted words such as user.password.change" in str(exc)
        assert str(exc).endswith(f"; got {action!r}")

    @pytest.mark.parametrize("action", ["user.login", "a.b.c.d", "Order_2.re-fund", "x.1"])
    def test_action_matching_pattern_is_accepted(self, action: str) -> None:
        """Dotted words of letters, digits, _ and - are accepted unchanged."""
        assert action == _prepare(_event(action=action)).doc["action"]


class TestSource:
    @pytest.mark.parametrize("source", ["Web", "1web", "we b", "-web", "_x", "wéb"])
    def test_source_not_matching_pattern_is_rejected(self, source: str) -> None:
        """A source that is not a lower-case word is refused, showing it."""
        exc = _rejected(_event(source=source))
        expected = "source"
        assert expected == exc.field
        expected = f"source: must be a lower-case word such as web, api, cli, job or db; got {source!r}"
        assert expected == str(exc)

    @pytest.mark.parametrize("source", ["web", "api", "job.nightly", "db_2", "a-b"])
    def test_source_matching_pattern_is_accepted(self, source: str) -> None:
        """Lower-case words with digits, '_', '.' and '-' after the first letter are accepted."""
        assert source == _prepare(_event(source=source)).doc["source"]


class TestOutcome:
    @pytest.mark.parametrize("outcome", ["ok", "SUCCESS", "Success", "", 1, True])
    def test_outcome_outside_allowed_values_is_rejected(self, outcome: Any) -> None:
        """outcome must be success, denied or failure; the message lists them and the value."""
        exc = _rejected(_event(outcome=outcome))
        expected = "outcome"
        assert expected == exc.field
        assert f"outcome: must be one of success, denied, failure; got {outcome!r}" == str(exc)

    @pytest.mark.parametrize("outcome", OUTCOMES)
    def test_allowed_outcome_is_kept(self, outcome: str) -> None:
        """Each allowed outcome is stored as given."""
        assert outcome == _prepare(_event(outcome=outcome)).doc["outcome"]

    def test_outcome_defaults_to_success(self) -> None:
        """An event without an outcome records success."""
        expected = "success"
        assert expected == _prepare(_event()).doc["outcome"]


# --------------------------------------------------------------------------------------------
# Targets


class TestTargets:
    @pytest.mark.parametrize("targets", ["c-1", b"c-1", 5])
    def test_non_list_targets_are_rejected(self, targets: Any) -> None:
        """targets that is a string, bytes or a scalar is refused, showing it."""
        exc = _rejected(_event(targets=targets))
        expected = "targets"
        assert expected == exc.field
        assert "targets: must be a list of {type, id, name} objects; got " in str(exc)
        assert repr(targets) in str(exc)

    def test_non_object_item_is_rejected_at_its_index(self) -> None:
        """A target item that is not an object is refused at targets[i]."""
        exc = _rejected(_event(targets=[{"type": "a", "id": "1"}, 5]))
        expected = "targets[1]"
        assert expected == exc.field
        expected = "targets[1]: must be an object with type and id; got 5"
        assert expected == str(exc)

    @pytest.mark.parametrize(
        ("item", "path"),
        [({"id": "c-1"}, "targets[0].type"), ({"type": "customer"}, "targets[0].id")],
    )
    def test_target_without_type_or_id_is_rejected(self, item: dict[str, Any], path: str) -> None:
        """A target missing type or id is refused at that field's path."""
        exc = _rejected(_event(targets=[item]))
        assert path == exc.field
        assert f"{path}: must be a string; got None" == str(exc)

    def test_error_path_points_at_the_offending_target(self) -> None:
        """The path names the index of the broken target, not the first one."""
        exc = _rejected(_event(targets=[("a", "1"), {"type": "b"}]))
        expected = "targets[1].id"
        assert expected == exc.field

    def test_unknown_target_field_is_rejected_by_path(self) -> None:
        """A key outside type, id and name is refused, its path naming the key."""
        exc = _rejected(_event(targets=[{"type": "customer", "id": "c-1", "kind": "x"}]))
        expected = "targets[0].kind"
        assert expected == exc.field
        assert "targets[0].kind: is not a target field (type, id, name)" in str(exc)

    def test_more_than_100_targets_are_rejected(self) -> None:
        """101 targets are refused, stating the limit of 100."""
        exc = _rejected(_event(targets=[("t", str(i)) for i in range(101)]))
        expected = "targets"
        assert expected == exc.field
        expected = "targets: must have at most 100 items; got <more>"
        assert expected == str(exc)

    def test_100_targets_are_accepted(self) -> None:
        """Exactly 100 targets are accepted."""
        expected = 100
        assert expected == len(_prepare(_event(targets=[("t", str(i)) for i in range(100)])).doc["targets"])

    def test_tuples_become_objects(self) -> None:
        """(type, id) and (type, id, name) tuples are stored as objects."""
        doc = _prepare(_event(targets=[("customer", "c-1"), ("order", "o-1", "Order 1")])).doc
        expected = [
            {"type": "customer", "id": "c-1"},
            {"type": "order", "id": "o-1", "name": "Order 1"},
        ]
        assert expected == doc["targets"]

    def test_integer_ids_become_strings(self) -> None:
        """Integer target ids (primary keys) are stored as their decimal text."""
        doc = _prepare(_event(targets=[("customer", 42), {"type": "order", "id": -7}])).doc
        expected = [{"type": "customer", "id": "42"}, {"type": "order", "id": "-7"}]
        assert expected == doc["targets"]

    def test_boolean_id_is_not_an_integer(self) -> None:
        """A bool target id is refused rather than stored as "True"."""
        exc = _rejected(_event(targets=[{"type": "flag", "id": True}]))
        expected = "targets[0].id"
        assert expected == exc.field
        expected = "targets[0].id: must be a string; got True"
        assert expected == str(exc)

    def test_single_target_need_not_be_wrapped(self) -> None:
        """A lone target object or (type, id) pair is stored as a one-item list."""
        expected = [{"type": "customer", "id": "c-1"}]
        assert expected == _prepare(_event(targets={"type": "customer", "id": "c-1"})).doc["targets"]
        assert expected == _prepare(_event(targets=("customer", "c-1"))).doc["targets"]

    def test_targets_default_to_empty_list(self) -> None:
        """An event without targets stores an empty list."""
        expected = []
        assert expected == _prepare(_event()).doc["targets"]


# --------------------------------------------------------------------------------------------
# Changes


class TestChanges:
    @pytest.mark.parametrize("changes", ["email", {"field": "email", "old": 1}, 5])
    def test_non_list_changes_are_rejected(self, changes: Any) -> None:
        """changes that is a string, a lone object or a scalar is refused."""
        exc = _rejected(_event(changes=changes))
        expected = "changes"
        assert expected == exc.field
        assert "changes: must be a list of {field, old, new} objects; got " in str(exc)

    def test_non_object_change_is_rejected_at_its_index(self) -> None:
        """A change item that is not an object is refused at changes[i], showing it."""
        exc = _rejected(_event(changes=[{"field": "a", "old": 1}, "b"]))
        expected = "changes[1]"
        assert expected == exc.field
        expected = "changes[1]: must be an object with field, old and new; got 'b'"
        assert expected == str(exc)

    def test_change_without_field_is_rejected(self) -> None:
        """A change without its field name is refused at changes[i].field."""
        exc = _rejected(_event(changes=[{"old": 1, "new": 2}]))
        expected = "changes[0].field"
        assert expected == exc.field
        expected = "changes[0].field: must be a string; got None"
        assert expected == str(exc)

    def test_unknown_change_field_is_rejected_by_path(self) -> None:
        """A key outside field/old/new/redacted/fingerprint is refused, its path naming the key."""
        exc = _rejected(_event(changes=[{"field": "a", "value": 1}]))
        expected = "changes[0].value"
        assert expected == exc.field
        assert "is not a change field (field, old, new, redacted, fingerprint)" in str(exc)

    def test_change_without_old_new_or_redacted_is_rejected(self) -> None:
        """A change with neither old, new nor redacted: true is refused at changes[i]."""
        exc = _rejected(_event(changes=[{"field": "a", "new": 1}, {"field": "b"}]))
        expected = "changes[1]"
        assert expected == exc.field
        assert "changes[1]: must have old, new, or redacted: true" in str(exc)

    @pytest.mark.parametrize("part", ["old", "new"])
    def test_redacted_change_with_values_is_rejected(self, part: str) -> None:
        """A redacted change that still carries old or new is refused at changes[i]."""
        exc = _rejected(_event(changes=[{"field": "pw", "redacted": True, part: "x"}]))
        expected = "changes[0]"
        assert expected == exc.field
        assert "changes[0]: a redacted change must not carry old or new values" in str(exc)

    @pytest.mark.parametrize("fingerprint", ["fp", None])
    def test_fingerprint_without_redacted_is_rejected(self, fingerprint: Any) -> None:
        """A fingerprint on a change that is not redacted is refused at changes[i].fingerprint."""
        exc = _rejected(_event(changes=[{"field": "pw", "old": 1, "fingerprint": fingerprint}]))
        expected = "changes[0].fingerprint"
        assert expected == exc.field
        assert "changes[0].fingerprint: is only allowed on a redacted change" in str(exc)

    @pytest.mark.parametrize("redacted", ["yes", "true", None, 1, 0])
    def test_non_boolean_redacted_is_rejected(self, redacted: Any) -> None:
        """redacted must be exactly true or false (not "yes", None, 1 or 0); the value is shown."""
        exc = _rejected(_event(changes=[{"field": "pw", "redacted": redacted}]))
        expected = "changes[0].redacted"
        assert expected == exc.field
        assert f"changes[0].redacted: must be true or false; got {redacted!r}" == str(exc)

    def test_more_than_1000_changes_are_rejected(self) -> None:
        """1001 changes are refused, stating the limit of 1000."""
        exc = _rejected(_event(changes=[{"field": "f", "new": i} for i in range(1001)]))
        expected = "changes"
        assert expected == exc.field
        expected = "changes: must have at most 1000 items; got <more>"
        assert expected == str(exc)

    def test_1000_changes_are_accepted(self) -> None:
        """Exactly 1000 changes are accepted."""
        changes = [{"field": "f", "new": i} for i in range(1000)]
        expected = 1000
        assert expected == len(_prepare(_event(changes=changes)).doc["changes"])

    def test_changes_are_stored_in_order_with_only_given_parts(self) -> None:
        """Each change keeps only the parts given; null old is kept, redacted false is dropped."""
        changes = [
            {"field": "email", "old": "a@x", "new": "b@x"},
            {"field": "nickname", "old": None},
            {"field": "plan", "new": {"tier": 2}, "redacted": False},
            {"field": "password", "redacted": True, "fingerprint": "sha256:ab"},
            {"field": "pin", "redacted": True},
        ]
        expected = [
            {"field": "email", "old": "a@x", "new": "b@x"},
            {"field": "nickname", "old": None},
            {"field": "plan", "new": {"tier": 2}},
            {"field": "password", "redacted": True, "fingerprint": "sha256:ab"},
            {"field": "pin", "redacted": True},
        ]
        assert expected == _prepare(_event(changes=changes)).doc["changes"]

    def test_change_dataclass_equals_dict(self) -> None:
        """Change dataclasses are stored exactly like the equivalent dicts."""
        given = [
            Change("email", old="a", new="b"),
            Change("nick", new=None),
            Change("pw", redacted=True, fingerprint="fp"),
        ]
        expected = [
            {"field": "email", "old": "a", "new": "b"},
            {"field": "nick", "new": None},
            {"field": "pw", "redacted": True, "fingerprint": "fp"},
        ]
        assert expected == _prepare(_event(changes=given)).doc["changes"]

    def test_change_dataclass_with_fingerprint_but_not_redacted_is_rejected(self) -> None:
        """A Change carrying a fingerprint without redacted is refused like the dict form, not
        silently stripped of its fingerprint."""
        exc = _rejected(_event(changes=[Change("pw", old=1, fingerprint="fp")]))
        expected = "changes[0].fingerprint"
        assert expected == exc.field

    def test_changes_default_to_empty_list(self) -> None:
        """An event without changes stores an empty list."""
        expected = []
        assert expected == _prepare(_event()).doc["changes"]


# --------------------------------------------------------------------------------------------
# Free-form JSON: context, metadata, changes old/new


def _at(location: str, value: Any) -> dict[str, Any]:
    """A valid event with ``value`` placed at ``location`` (a field path prefix)."""
    if location == "metadata.x":
        return _event(metadata={"x": value})
    if location == "context.x":
        return _event(context={"x": value})
    if location == "metadata.x[1]":
        return _event(metadata={"x": [0, value]})
    if location == "changes[0].old":
        return _event(changes=[{"field": "f", "old": value}])
    if location == "changes[0].new":
        return _event(changes=[{"field": "f", "old": 1, "new": value}])
    if location == "changes[1].old.deep":
        return _event(changes=[{"field": "a", "new": 1}, {"field": "b", "old": {"deep": value}}])
    if location == "changes[0].new.list[2].k":
        return _event(changes=[{"field": "f", "new": {"list": [1, 2, {"k": value}]}}])
    raise AssertionError(location)


_LOCATIONS = [
    "metadata.x",
    "context.x",
    "metadata.x[1]",
    "changes[0].old",
    "changes[0].new",
    "changes[1].old.deep",
    "changes[0].new.list[2].k",
]


class TestFreeFormJSON:
    @pytest.mark.parametrize("key", ["context", "metadata"])
    @pytest.mark.parametrize("value", [[1], "x", 5, True])
    def test_context_and_metadata_must_be_objects(self, key: str, value: Any) -> None:
        """context and metadata that are not objects are refused, showing the value."""
        exc = _rejected(_event(**{key: value}))
        assert key == exc.field
        assert f"{key}: must be a JSON object; got " in str(exc)
        assert repr(value) in str(exc)

    @pytest.mark.parametrize("location", _LOCATIONS)
    @pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
    def test_non_finite_numbers_are_rejected(self, location: str, value: float) -> None:
        """NaN, +Infinity and -Infinity are refused wherever they appear, at their exact path."""
        exc = _rejected(_at(location, value))
        assert location == exc.field
        assert f"{location}: must be a finite number (no NaN or Infinity); got {value!r}" == str(exc)

    @pytest.mark.parametrize("location", _LOCATIONS)
    @pytest.mark.parametrize("value", [2**53, -(2**53), 2**64, -(10**30)])
    def test_integers_beyond_safe_range_are_rejected(self, location: str, value: int) -> None:
        """Integers beyond +-(2**53 - 1) are refused (I-JSON), stating the bound and the value."""
        exc = _rejected(_at(location, value))
        assert location == exc.field
        expected = f"{location}: {INTEGER_RULE}; got {value}"
        assert expected == str(exc)

    @pytest.mark.parametrize("value", [MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER])
    def test_integers_at_safe_bound_are_accepted(self, value: int) -> None:
        """The safe-range bounds themselves are accepted and written exactly."""
        leaf = _prepare(_event(metadata={"x": value})).leaf
        assert f'"metadata":{{"x":{value}}}'.encode() in leaf

    @pytest.mark.parametrize(
        ("location", "value", "path"),
        [
            ("metadata.x", {1: "a"}, "metadata.x"),
            ("context.x", {None: 1}, "context.x"),
            ("changes[0].old", {(1, 2): 1}, "changes[0].old"),
            ("changes[1].old.deep", {"ok": {b"k": 1}}, "changes[1].old.deep.ok"),
        ],
    )
    def test_non_string_keys_are_rejected(self, location: str, value: Any, path: str) -> None:
        """An object key that is not a string is refused at the object's path, showing the key."""
        exc = _rejected(_at(location, value))
        assert path == exc.field
        assert f"{path}: object keys must be strings; got " in str(exc)

    def test_non_string_key_at_metadata_top_is_rejected(self) -> None:
        """A non-string key directly in metadata is refused at "metadata"."""
        exc = _rejected(_event(metadata={1: "a"}))
        expected = "metadata"
        assert expected == exc.field
        expected = "metadata: object keys must be strings; got 1"
        assert expected == str(exc)

    @pytest.mark.parametrize("location", _LOCATIONS)
    @pytest.mark.parametrize(
        ("value", "shown"),
        [
            ({1, 2}, "set {1, 2}"),
            (b"raw", "bytes b'raw'"),
            (frozenset(), "frozenset frozenset()"),
            (1j, "complex 1j"),
            (date(2024, 1, 1), "date datetime.date(2024, 1, 1)"),
        ],
    )
    def test_non_json_types_are_rejected(self, location: str, value: Any, shown: str) -> None:
        """Non-JSON values (set, bytes, complex, date, ...) are refused, naming their type."""
        exc = _rejected(_at(location, value))
        assert location == exc.field
        expected = f"{location}: must be JSON (object, array, string, number, true, false or null); got {shown}"
        assert expected == str(exc)

    def test_arbitrary_object_is_rejected(self) -> None:
        """A plain Python object is refused as not JSON."""
        exc = _rejected(_event(metadata={"x": object()}))
        expected = "metadata.x"
        assert expected == exc.field
        assert "got object <object object at " in str(exc)

    @pytest.mark.parametrize(
        "location",
        [
            "context.x",
            "changes[0].old",
            "changes[0].new",
            "changes[1].old.deep",
            "changes[0].new.list[2].k",
            "metadata.x",
            "metadata.x[1]",
        ],
    )
    def test_lone_surrogate_in_value_is_rejected_at_its_path(self, location: str) -> None:
        """A string value holding a lone surrogate is refused as a ValidationError at its path."""
        exc = _rejected(_at(location, "ok\udc00"))
        assert location == exc.field
        assert f"{location}: must be valid Unicode (no lone surrogates); got 'ok\\udc00'" == str(exc)

    @pytest.mark.parametrize(
        ("event", "path"),
        [
            (_event(context={"\ud800": 1}), "context.<key>"),
            (_event(context={"a": {"b\udfff": 1}}), "context.a.<key>"),
            (_event(changes=[{"field": "f", "new": {"\ud83d": 1}}]), "changes[0].new.<key>"),
            (_event(changes=[{"field": "f", "old": [{"k\udc00": 0}]}]), "changes[0].old[0].<key>"),
            (_event(metadata={"\ud800": 1}), "metadata.<key>"),
            (_event(metadata={"a": {"\ud800": 1}}), "metadata.a.<key>"),
        ],
    )
    def test_lone_surrogate_in_key_is_rejected_naming_the_object(self, event: dict[str, Any], path: str) -> None:
        """A key holding a lone surrogate is refused as a ValidationError naming its object."""
        exc = _rejected(event)
        assert path == exc.field
        assert "must be valid Unicode (no lone surrogates)" in str(exc)

    def test_metadata_nested_32_levels_is_accepted(self) -> None:
        """metadata may nest 32 levels (metadata itself being level 1)."""
        _prepare(_event(metadata=_nested_dicts(32)))

    @pytest.mark.parametrize("key", ["metadata", "context"])
    def test_nesting_deeper_than_32_levels_is_rejected(self, key: str) -> None:
        """A 33rd level of objects is refused at the path of the too-deep object."""
        exc = _rejected(_event(**{key: _nested_dicts(33)}))
        path = key + ".a" * 32
        assert path == exc.field
        assert f"{path}: must not nest deeper than 32 levels; got <deeper>" == str(exc)

    def test_list_nesting_counts_as_depth(self) -> None:
        """Arrays count towards the depth limit just like objects."""
        _prepare(_event(context={"x": _nested_lists(31)}))
        exc = _rejected(_event(context={"x": _nested_lists(32)}))
        expected = "context.x" + "[0]" * 31
        assert expected == exc.field
        assert "must not nest deeper than 32 levels" in str(exc)

    def test_change_values_count_depth_from_the_entry(self) -> None:
        """changes[i].old sits at level 3 of the entry, so it may nest 30 levels more, not 31."""
        _prepare(_event(changes=[{"field": "f", "old": _nested_dicts(30)}]))
        exc = _rejected(_event(changes=[{"field": "f", "old": _nested_dicts(31)}]))
        expected = "changes[0].old" + ".a" * 30
        assert expected == exc.field
        assert "must not nest deeper than 32 levels" in str(exc)

    @pytest.mark.parametrize("key", ["\ue000", "\uffff", "\U0001f600", "a\U00010000"])
    def test_tuples_are_accepted_whatever_the_keys(self, key: str) -> None:
        """Tuples in free-form values are accepted as arrays even next to keys >= U+D800."""
        plain = _prepare(_event(metadata={key: 1, "t": [1, [2]]}, changes=[{"field": "f", "new": [3]}])).leaf
        tupled = _prepare(_event(metadata={key: 1, "t": (1, (2,))}, changes=[{"field": "f", "new": (3,)}])).leaf
        assert plain == tupled

    def test_tuples_are_written_as_arrays(self) -> None:
        """A tuple inside metadata is written as a JSON array."""
        assert b'"metadata":{"t":[1,2]}' in _prepare(_event(metadata={"t": (1, 2)})).leaf


# --------------------------------------------------------------------------------------------
# Size limits


class TestSizeLimits:
    @pytest.mark.parametrize(
        ("text", "size"),
        [("x" * 65536, 65536), ("€" * 21845, 65535), ("\U0001f600" * 16384, 65536)],
    )
    def test_string_at_64_kib_is_accepted(self, text: str, size: int) -> None:
        """A string of up to 65536 UTF-8 bytes is accepted, however many characters that is."""
        assert size == len(text.encode())
        assert text == _prepare(_event(reason=text)).doc["reason"]

    @pytest.mark.parametrize("text", ["x" * 65537, "€" * 21846, "\U0001f600" * 16385, "x" * 65535 + "é"])
    def test_string_over_64_kib_of_utf8_is_rejected(self, text: str) -> None:
        """A string over 65536 UTF-8 bytes is refused, stating the byte limit and the length."""
        exc = _rejected(_event(reason=text))
        expected = "reason"
        assert expected == exc.field
        expected = f"reason: must be at most 65536 bytes of UTF-8; got <{len(text.encode())} bytes>"
        assert expected == str(exc)

    @pytest.mark.parametrize("location", ["context.x", "changes[0].old", "changes[1].old.deep", "metadata.x"])
    def test_free_form_string_over_64_kib_is_rejected(self, location: str) -> None:
        """The 64 KiB string limit also applies inside free-form values, at the string's path."""
        exc = _rejected(_at(location, "€" * 21846))
        assert location == exc.field
        assert "must be at most 65536 bytes of UTF-8" in str(exc)

    def test_reason_must_be_a_string(self) -> None:
        """A non-string reason is refused."""
        exc = _rejected(_event(reason=42))
        expected = "reason"
        assert expected == exc.field
        expected = "reason: must be a string; got 42"
        assert expected == str(exc)

    def test_lone_surrogate_in_reason_is_rejected(self) -> None:
        """A reason holding a lone surrogate is refused at "reason"."""
        exc = _rejected(_event(reason="why\ud800"))
        expected = "reason"
        assert expected == exc.field
        assert "must be valid Unicode (no lone surrogates)" in str(exc)

    def test_metadata_encoding_to_64_kib_is_accepted(self) -> None:
        """metadata that encodes to exactly 65536 bytes is accepted."""
        metadata = {"a": "x" * (65536 - len(b'{"a":""}'))}
        expected = 65536
        assert expected == len(orjson.dumps(metadata))
        _prepare(_event(metadata=metadata))

    def test_metadata_over_64_kib_is_rejected(self) -> None:
        """metadata that encodes to 65537 bytes is refused, stating the limit and the size."""
        metadata = {f"k{i}": "y" * 8000 for i in range(9)}
        size = len(orjson.dumps(metadata))
        assert size > 65536
        exc = _rejected(_event(metadata=metadata))
        expected = "metadata"
        assert expected == exc.field
        assert f"metadata: must encode to at most 65536 bytes; got <{size} bytes>" == str(exc)

    def test_metadata_one_byte_over_is_rejected(self) -> None:
        """metadata one byte over 64 KiB is refused."""
        metadata = {"a": "x" * (65537 - len(b'{"a":""}'))}
        exc = _rejected(_event(metadata=metadata))
        expected = "metadata: must encode to at most 65536 bytes; got <65537 bytes>"
        assert expected == str(exc)

    def test_entry_over_1_mib_is_rejected(self) -> None:
        """An entry whose leaf would exceed 1 MiB is refused as "entry", stating limit and size."""
        context = {f"k{i:02}": "x" * 60000 for i in range(18)}
        exc = _rejected(_event(context=context))
        expected = "entry"
        assert expected == exc.field
        match = re.fullmatch(r"entry: must encode to at most 1048576 bytes; got <(\d+) bytes>", str(exc))
        assert match is not None
        assert int(match[1]) > 1048576

    def test_entry_just_under_1_mib_is_accepted(self) -> None:
        """An entry of up to 1 MiB is accepted."""
        context = {f"k{i:02}": "x" * 60000 for i in range(17)}
        assert len(_prepare(_event(context=context)).leaf) <= 1048576


# --------------------------------------------------------------------------------------------
# Time


class TestOccurredAt:
    @pytest.mark.parametrize(
        "given",
        [
            datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2))),
            datetime(2024, 5, 1, 7, 30, tzinfo=timezone(timedelta(hours=-5))),
            datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
            "2024-05-01T12:30:00Z",
            "2024-05-01T12:30:00z",
            "2024-05-01T14:30:00+02:00",
            "2024-05-01T12:30:00.000000+00:00",
            " 2024-05-01T12:30:00Z ",
        ],
    )
    def test_occurred_at_is_stored_as_utc_with_microseconds(self, given: Any) -> None:
        """Any aware datetime or offset timestamp is stored as UTC YYYY-MM-DDTHH:MM:SS.ffffffZ."""
        expected = "2024-05-01T12:30:00.000000Z"
        assert expected == _prepare(_event(occurred_at=given)).doc["occurred_at"]

    def test_fractional_seconds_are_kept_to_the_microsecond(self) -> None:
        """Fractions of a second survive normalisation."""
        doc = _prepare(_event(occurred_at="2024-05-01T14:30:00.5+02:00")).doc
        expected = "2024-05-01T12:30:00.500000Z"
        assert expected == doc["occurred_at"]

    def test_recorded_at_is_now(self) -> None:
        """recorded_at is the ``now`` passed in, normalised to UTC."""
        now = datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
        doc = prepare(_event(), now=now, new_id=lambda: "x").doc
        expected = "2024-05-01T12:00:00.123456Z"
        assert expected == doc["recorded_at"]

    def test_occurred_at_defaults_to_recorded_at(self) -> None:
        """Without occurred_at the event is taken to have happened when it was recorded."""
        doc = _prepare(_event()).doc
        expected = NOW_TEXT
        assert expected == doc["occurred_at"]
        expected = NOW_TEXT
        assert expected == doc["recorded_at"]

    def test_caller_recorded_at_is_refused(self) -> None:
        """recorded_at is set by the log; an event that carries one is refused, not silently changed."""
        exc = _rejected(_event(recorded_at="2000-01-01T00:00:00Z"))
        expected = "recorded_at: is set by the log, not by the caller; got '2000-01-01T00:00:00Z'"
        assert expected == str(exc)

    @pytest.mark.parametrize(
        ("given", "shown"),
        [
            (datetime(2024, 5, 1, 12, 30), "'2024-05-01T12:30:00'"),
            ("2024-05-01T12:30:00", "'2024-05-01T12:30:00'"),
            ("2024-05-01", "'2024-05-01'"),
        ],
    )
    def test_naive_time_is_rejected(self, given: Any, shown: str) -> None:
        """A naive datetime or a timestamp without an offset is refused, not assumed to be UTC."""
        exc = _rejected(_event(occurred_at=given))
        expected = "occurred_at"
        assert expected == exc.field
        expected = f"occurred_at: must be timezone-aware (naive datetimes are ambiguous); got {shown}"
        assert expected == str(exc)

    @pytest.mark.parametrize(
        "given",
        [
            "yesterday",
            "",
            "2024-13-01T00:00:00Z",
            "12:30:00+00:00",
            "2024-05-01T12:30:00+25:00",
            "ok\ud800",
        ],
    )
    def test_unparseable_timestamp_is_rejected(self, given: str) -> None:
        """Text that is not an ISO 8601 timestamp is refused, showing it."""
        exc = _rejected(_event(occurred_at=given))
        expected = "occurred_at"
        assert expected == exc.field
        assert f"occurred_at: must be an ISO 8601 timestamp with a timezone; got {given!r}" == str(exc)

    @pytest.mark.parametrize(
        ("given", "shown"),
        [
            (1714566600, "1714566600"),
            (1714566600.5, "1714566600.5"),
            (date(2024, 5, 1), "date datetime.date(2024, 5, 1)"),
            ([2024], "list [2024]"),
        ],
    )
    def test_non_text_non_datetime_is_rejected(self, given: Any, shown: str) -> None:
        """Epoch numbers, dates and other types are refused as not being timestamps."""
        exc = _rejected(_event(occurred_at=given))
        expected = "occurred_at"
        assert expected == exc.field
        assert f"occurred_at: must be an ISO 8601 timestamp with a timezone; got {shown}" == str(exc)

    @pytest.mark.parametrize(
        "given",
        ["1969-12-31T23:59:59.999999Z", "1900-01-01T00:00:00+00:00", "0001-01-01T00:00:00Z"],
    )
    def test_timestamp_before_1970_is_rejected(self, given: str) -> None:
        """A timestamp before the Unix epoch is refused, showing it."""
        exc = _rejected(_event(occurred_at=given))
        expected = "occurred_at"
        assert expected == exc.field
        assert f"occurred_at: must not be before 1970-01-01 UTC; got {given!r}" == str(exc)

    def test_epoch_itself_is_accepted(self) -> None:
        """1970-01-01T00:00:00Z is the earliest accepted moment."""
        doc = _prepare(_event(occurred_at="1970-01-01T00:00:00Z")).doc
        expected = "1970-01-01T00:00:00.000000Z"
        assert expected == doc["occurred_at"]

    @pytest.mark.parametrize(
        "given",
        [
            datetime(1969, 12, 31, 23, 59, tzinfo=UTC),
            datetime(1900, 1, 1, tzinfo=UTC),
            datetime(1, 1, 1, tzinfo=UTC),
        ],
    )
    def test_datetime_before_1970_is_rejected(self, given: datetime) -> None:
        """The 1970 bound applies to datetime objects too, not only to text."""
        exc = _rejected(_event(occurred_at=given))
        expected = "occurred_at"
        assert expected == exc.field
        assert "must not be before 1970-01-01" in str(exc)

    def test_1970_bound_is_the_utc_instant_for_positive_offsets(self) -> None:
        """1970-01-01T00:30+01:00 is 1969-12-31T23:30Z, before the epoch, so it is refused."""
        exc = _rejected(_event(occurred_at="1970-01-01T00:30:00+01:00"))
        expected = "occurred_at"
        assert expected == exc.field
        assert "must not be before 1970-01-01" in str(exc)

    def test_1970_bound_is_the_utc_instant_for_negative_offsets(self) -> None:
        """1969-12-31T23:30-01:00 is 1970-01-01T00:30Z, after the epoch, so it is accepted."""
        doc = _prepare(_event(occurred_at="1969-12-31T23:30:00-01:00")).doc
        expected = "1970-01-01T00:30:00.000000Z"
        assert expected == doc["occurred_at"]

    @pytest.mark.parametrize(
        "given",
        [
            "9999-12-31T23:00:00-05:00",
            datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))),
        ],
    )
    def test_time_beyond_year_9999_in_utc_is_a_validation_error(self, given: Any) -> None:
        """A moment after 9999-12-31 in UTC is refused at occurred_at, not an OverflowError."""
        exc = _rejected(_event(occurred_at=given))
        expected = "occurred_at"
        assert expected == exc.field


class TestParseTime:
    def test_uses_the_given_field_name(self) -> None:
        """parse_time reports errors under the name it is given."""
        with pytest.raises(ValidationError) as info:
            parse_time("soon", "since")
        expected = "since"
        assert expected == info.value.field
        expected = "since: must be an ISO 8601 timestamp with a timezone; got 'soon'"
        assert expected == str(info.value)

    def test_returns_the_stored_form(self) -> None:
        """parse_time returns UTC text with microseconds and a Z."""
        expected = "2024-01-02T01:04:05.000006Z"
        assert expected == parse_time("2024-01-02T03:04:05.000006+02:00", "t")


# --------------------------------------------------------------------------------------------
# Normalisation of the document


class TestDocument:
    def test_minimal_event_holds_only_required_fields(self) -> None:
        """Absent optional fields (reason, source, context, tenant, metadata) are not in doc."""
        doc = _prepare(_event()).doc
        expected = REQUIRED_KEYS
        assert expected == set(doc)

    def test_none_optional_fields_are_absent(self) -> None:
        """Optional fields given as None are treated as absent."""
        event = _event(
            reason=None,
            source=None,
            context=None,
            tenant=None,
            metadata=None,
            id=None,
            occurred_at=None,
        )
        assert _prepare(_event()).doc == _prepare(event).doc

    def test_minimal_document(self) -> None:
        """A minimal event is stored as exactly this document."""
        expected = {
            "v": SCHEMA_VERSION,
            "id": "ent-1",
            "occurred_at": NOW_TEXT,
            "recorded_at": NOW_TEXT,
            "actor": {"type": "user", "id": "u-1"},
            "action": "user.login",
            "targets": [],
            "outcome": "success",
            "changes": [],
        }
        assert expected == _prepare(_event()).doc

    def test_default_id_comes_from_new_id(self) -> None:
        """Without an id the entry takes the one new_id returns, called once."""
        calls: list[str] = []

        def new_id() -> str:
            calls.append("x")
            return f"gen-{len(calls)}"

        prepared = _prepare(_event(), new_id=new_id)
        expected = "gen-1"
        assert expected == prepared.doc["id"]
        expected = "gen-1"
        assert expected == prepared.id
        expected = ["x"]
        assert expected == calls

    def test_given_id_is_kept_and_new_id_not_called(self) -> None:
        """A caller's id is stored as given and no id is generated."""

        def new_id() -> str:
            raise AssertionError("new_id must not be called")

        prepared = _prepare(_event(id="evt-42"), new_id=new_id)
        expected = "evt-42"
        assert expected == prepared.doc["id"]
        expected = "evt-42"
        assert expected == prepared.id

    def test_optional_fields_are_kept(self) -> None:
        """reason, source, tenant, context and metadata are stored as given."""
        event = _event(
            reason="asked by support",
            source="web",
            tenant="acme",
            context={"request_id": "r-1"},
            metadata={"k": [1, "two", None]},
        )
        doc = _prepare(event).doc
        expected = "asked by support"
        assert expected == doc["reason"]
        expected = "web"
        assert expected == doc["source"]
        expected = "acme"
        assert expected == doc["tenant"]
        expected = {"request_id": "r-1"}
        assert expected == doc["context"]
        expected = {"k": [1, "two", None]}
        assert expected == doc["metadata"]

    def test_empty_reason_is_allowed(self) -> None:
        """reason is free text, so an empty reason is kept."""
        expected = ""
        assert expected == _prepare(_event(reason="")).doc["reason"]

    def test_integral_floats_encode_as_integers(self) -> None:
        """1.0, -0.0 and 2.5e3 are written as 1, 0 and 2500 in the leaf (ECMAScript form)."""
        leaf = _prepare(_event(metadata={"a": 1.0, "b": -0.0, "c": 2.5e3, "d": [3.0]})).leaf
        assert b'"metadata":{"a":1,"b":0,"c":2500,"d":[3]}' in leaf

    @pytest.mark.parametrize(
        ("value", "text"),
        [
            (0.1, b"0.1"),
            (1e21, b"1e+21"),
            (1e-7, b"1e-7"),
            (1e-6, b"0.000001"),
            (-1.5, b"-1.5"),
            (-1.5e300, b"-1.5e+300"),
            (9007199254740991.0, b"9007199254740991"),
        ],
    )
    def test_floats_encode_in_ecmascript_form(self, value: float, text: bytes) -> None:
        """Non-integral and large floats are written exactly as RFC 8785 requires."""
        leaf = _prepare(_event(changes=[{"field": "f", "new": value}])).leaf
        assert b'"new":' + text + b"}" in leaf

    @pytest.mark.parametrize("value", [2.0**53, 1e16, -(2.0**60), 1.8446744073709552e19, 9.999999999999999e20])
    def test_whole_floats_written_as_unsafe_integers_are_refused(self, value: float) -> None:
        """RFC 8785 writes a float below 1e21 in integer digits: beyond 2**53 - 1 those digits read back
        as an integer no JCS encoder accepts (an offline bundle would fail), so the float is refused."""
        exc = _rejected(_event(changes=[{"field": "f", "new": value}]))
        assert ("changes[0].new", INTEGER_RULE, value) == (exc.field, exc.rule, exc.value)

    def test_keys_at_or_above_d800_sort_by_utf16(self) -> None:
        """Keys with characters >= U+D800 sort by UTF-16 code units (astral before U+E000)."""
        leaf = _prepare(_event(metadata={"\ue000": 1, "\U0001f600": 2, "a": 0})).leaf
        expected = '"metadata":{"a":0,"\U0001f600":2,"\ue000":1}'.encode()
        assert expected in leaf

    def test_event_dataclass_equals_dict_input(self) -> None:
        """An Event built from dataclasses prepares to the same doc and leaf as the dict form."""
        from graven.core.model import Target

        occurred = datetime(2024, 4, 30, 9, 0, tzinfo=UTC)
        event = Event(
            action="customer.email.change",
            actor=Actor(type="user", id="u-1", name="Ann", ip="2001:DB8::1"),
            targets=[Target("customer", "c-1", "Acme"), ("order", "o-1")],
            outcome="denied",
            reason="not allowed",
            changes=[
                Change("email", old="a@x", new="b@x"),
                Change("password", redacted=True, fingerprint="fp"),
            ],
            source="web",
            context={"request_id": "r-1"},
            tenant="acme",
            metadata={"score": 0.5},
            id="evt-1",
            occurred_at=occurred,
        )
        as_dict = {
            "action": "customer.email.change",
            "actor": {"type": "user", "id": "u-1", "name": "Ann", "ip": "2001:DB8::1"},
            "targets": [
                {"type": "customer", "id": "c-1", "name": "Acme"},
                {"type": "order", "id": "o-1"},
            ],
            "outcome": "denied",
            "reason": "not allowed",
            "changes": [
                {"field": "email", "old": "a@x", "new": "b@x"},
                {"field": "password", "redacted": True, "fingerprint": "fp"},
            ],
            "source": "web",
            "context": {"request_id": "r-1"},
            "tenant": "acme",
            "metadata": {"score": 0.5},
            "id": "evt-1",
            "occurred_at": occurred,
        }
        from_event = _prepare(event_from(event))
        from_dict = _prepare(as_dict)
        assert from_dict.doc == from_event.doc
        assert from_dict.leaf == from_event.leaf
        expected = "2001:db8::1"
        assert expected == from_event.doc["actor"]["ip"]

    def test_minimal_event_dataclass_gets_defaults(self) -> None:
        """An Event with only action and actor stores success, no targets and no changes."""
        doc = _prepare(event_from(Event(action="user.login", actor="u-1"))).doc
        assert _prepare(_event()).doc == doc


class TestEventFrom:
    def test_keyword_arguments(self) -> None:
        """Keyword arguments become the event dict."""
        expected = {"action": "a.b", "actor": "u"}
        assert expected == event_from(action="a.b", actor="u")

    def test_mapping_is_copied(self) -> None:
        """A mapping is returned as a new plain dict."""
        given = {"action": "a.b", "actor": "u"}
        result = event_from(given)
        assert given == result
        assert given is not result

    def test_event_becomes_its_dict(self) -> None:
        """An Event is turned into its JSON shape, dropping None fields."""
        expected = {
            "action": "a.b",
            "actor": "u",
            "targets": [],
            "outcome": "success",
            "changes": [],
        }
        assert expected == event_from(Event(action="a.b", actor="u"))

    def test_event_and_keywords_together_are_refused(self) -> None:
        """Passing both an event and keyword arguments is a TypeError."""
        with pytest.raises(TypeError, match="not both"):
            event_from({"action": "a.b"}, actor="u")

    def test_non_event_is_a_validation_error(self) -> None:
        """Something that is not a dict or Event is refused at "event"."""
        with pytest.raises(ValidationError) as info:
            event_from(["action"])
        expected = "event"
        assert expected == info.value.field
        expected = "event: must be a dict, an Event or keyword arguments; got list ['action']"
        assert expected == str(info.value)


# --------------------------------------------------------------------------------------------
# The leaf


_CHARS = st.one_of(
    st.characters(codec="utf-8"),  # any code point except lone surrogates
    st.characters(min_codepoint=0xE000, max_codepoint=0xFFFF),
    st.characters(min_codepoint=0x10000),
    st.sampled_from(["\x00", "\x1f", '"', "\\", "/", "\x7f", "\u2028", "\ud7ff", "\ufeff"]),
)
_TEXT = st.text(_CHARS, max_size=10)
_KEYS = st.one_of(
    _TEXT,
    st.text(st.sampled_from(["a", "b", "\x7f", "\ue000", "\uffff", "\U0001f600", "\U00010000"])),
)
_JSON: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER),
        st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not MAX_SAFE_INTEGER < abs(x) < 1e21),
        _TEXT,
    ),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(_KEYS, children, max_size=4)),
    max_leaves=16,
)
# Identifiers and names as the rules accept them: no refused character (so no U+0000 either).
_NAME = (
    st.text(_CHARS, min_size=1, max_size=12)
    .map(lambda s: REFUSED_IN_IDENTIFIERS.sub("", s))
    .filter(lambda s: s != "" and not s.isspace())
)
_ID = st.one_of(_NAME, st.integers(min_value=-(10**12), max_value=10**12))
_WORD = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=6)
_ACTION = st.lists(_WORD, min_size=2, max_size=4).map(".".join)
_SOURCE = st.from_regex(SOURCE_RE, fullmatch=True).filter(lambda s: len(s) <= 64)
_ACTOR = st.one_of(
    _NAME,
    st.builds(
        lambda kind, ident, name, ip, ua, session: {
            k: v
            for k, v in {
                "type": kind,
                "id": ident,
                "name": name,
                "ip": ip,
                "user_agent": ua,
                "session": session,
            }.items()
            if v is not None
        },
        st.sampled_from(ACTOR_TYPES),
        _NAME,
        st.none() | _NAME,
        st.none() | st.ip_addresses().map(str),
        st.none() | _NAME,
        st.none() | _NAME,
    ),
    st.builds(Actor, type=st.sampled_from(["system", "anonymous"])),
)


def _target_key(t: Any) -> tuple[str, str]:
    """What makes two generated targets the same target (ids compare as text)."""
    kind, ident = (t["type"], t["id"]) if isinstance(t, dict) else (t[0], t[1])
    return kind, str(ident)


_TARGET = st.one_of(
    st.tuples(_NAME, _ID),
    st.tuples(_NAME, _ID, _NAME),
    st.fixed_dictionaries({"type": _NAME, "id": _ID}, optional={"name": _NAME}),
)
_CHANGE = st.one_of(
    st.fixed_dictionaries({"field": _NAME, "old": _JSON}, optional={"new": _JSON}),
    st.fixed_dictionaries({"field": _NAME, "new": _JSON}),
    st.fixed_dictionaries({"field": _NAME, "redacted": st.just(True)}, optional={"fingerprint": _NAME}),
)
_OCCURRED = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(9998, 12, 31),
    timezones=st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m))),
)
_EVENT = st.fixed_dictionaries(
    {"actor": _ACTOR, "action": _ACTION},
    optional={
        "targets": st.lists(_TARGET, max_size=4, unique_by=_target_key),
        "changes": st.lists(_CHANGE, max_size=4),
        "outcome": st.sampled_from(OUTCOMES),
        "reason": _TEXT,
        "source": _SOURCE,
        "tenant": _NAME,
        "context": st.dictionaries(_KEYS, _JSON, max_size=4),
        "metadata": st.dictionaries(_KEYS, _JSON, max_size=4),
        "id": _NAME,
        "occurred_at": st.one_of(_OCCURRED, _OCCURRED.map(datetime.isoformat)),
    },
)


def _same_json(expected: Any, actual: Any) -> bool:
    """Equal as JSON values: a float and the number JCS wrote for it compare as floats."""
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(_same_json(expected[k], actual[k]) for k in expected)
        )
    if isinstance(expected, list):
        return isinstance(actual, list) and len(expected) == len(actual) and all(map(_same_json, expected, actual))
    if isinstance(expected, float) and not isinstance(actual, bool):
        return isinstance(actual, int | float) and expected == float(actual)
    return type(expected) is type(actual) and expected == actual


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


class TestLeaf:
    def test_leaf_is_the_reference_encoding_of_doc(self) -> None:
        """The leaf is exactly canonical.encode_reference(doc)."""
        prepared = _prepare(_event(metadata={"x": 0.1, "é": [1.0, None]}, reason="r"))
        assert canonical.encode_reference(prepared.doc) == prepared.leaf

    def test_leaf_hash_is_rfc9162_leaf_hash(self) -> None:
        """leaf_hash is SHA-256 of a 0x00 byte followed by the leaf."""
        prepared = _prepare(_event())
        assert hashlib.sha256(b"\x00" + prepared.leaf).digest() == prepared.leaf_hash

    def test_minimal_leaf_bytes(self) -> None:
        """A minimal event has exactly these leaf bytes: sorted keys, no whitespace."""
        expected = (
            b'{"action":"user.login","actor":{"id":"u-1","type":"user"},"changes":[],'
            b'"id":"ent-1","occurred_at":"2024-05-01T12:00:00.123456Z","outcome":"success",'
            b'"recorded_at":"2024-05-01T12:00:00.123456Z","targets":[],"v":1}'
        )
        assert expected == _prepare(_event()).leaf

    def test_prepared_repr_omits_leaf_hash(self) -> None:
        """Prepared's repr shows doc and leaf but not the hash bytes."""
        assert "leaf_hash" not in repr(_prepare(_event()))

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_EVENT)
    def test_fast_path_is_byte_identical_to_reference(self, event: dict[str, Any]) -> None:
        """For any valid event, prepare succeeds and its leaf equals encode_reference(doc),
        rfc8785's encoding, and decodes back to doc."""
        free = [event.get("context", {}), event.get("metadata", {})]
        free += [c.get(p) for c in event.get("changes", []) for p in ("old", "new")]
        assume(all(_depth(v) <= 28 for v in free))
        prepared = _prepare(event)
        assert canonical.encode_reference(prepared.doc) == prepared.leaf
        assert rfc8785.dumps(prepared.doc) == prepared.leaf
        assert _same_json(prepared.doc, orjson.loads(prepared.leaf))
        assert hashlib.sha256(b"\x00" + prepared.leaf).digest() == prepared.leaf_hash
        assert ACTION_RE.fullmatch(prepared.doc["action"])

    @settings(max_examples=150, deadline=None)
    @given(_EVENT)
    def test_preparing_the_stored_doc_again_gives_the_same_leaf(self, event: dict[str, Any]) -> None:
        """A stored doc fed back through prepare (same clock) is a fixed point."""
        free = [event.get("context", {}), event.get("metadata", {})]
        free += [c.get(p) for c in event.get("changes", []) for p in ("old", "new")]
        assume(all(_depth(v) <= 28 for v in free))
        first = _prepare(event)
        stored = {k: v for k, v in first.doc.items() if k != "recorded_at"}
        again = prepare(stored, now=NOW, new_id=lambda: "unused")
        assert first.leaf == again.leaf


# --------------------------------------------------------------------------------------------
# Entry


class TestEntry:
    DATA: dict[str, Any] = {  # noqa: RUF012 - read-only fixture
        "v": 1,
        "id": "evt-1",
        "occurred_at": "2024-05-01T12:30:00.000000Z",
        "recorded_at": "2024-05-01T12:30:01.250000Z",
        "actor": {"type": "user", "id": "u-1"},
        "action": "user.login",
        "targets": [{"type": "customer", "id": "c-1"}],
        "outcome": "denied",
        "changes": [{"field": "f", "old": 1, "new": 2}],
        "reason": "locked",
    }

    def test_accessors_read_the_stored_fields(self) -> None:
        """id, action, outcome, actor, targets and changes return the stored values."""
        entry = Entry(index=7, data=dict(self.DATA))
        expected = "evt-1"
        assert expected == entry.id
        expected = "user.login"
        assert expected == entry.action
        expected = "denied"
        assert expected == entry.outcome
        expected = {"type": "user", "id": "u-1"}
        assert expected == entry.actor
        expected = [{"type": "customer", "id": "c-1"}]
        assert expected == entry.targets
        expected = [{"field": "f", "old": 1, "new": 2}]
        assert expected == entry.changes
        expected = 7
        assert expected == entry.index

    def test_times_are_aware_utc_datetimes(self) -> None:
        """occurred_at and recorded_at are parsed into timezone-aware UTC datetimes."""
        entry = Entry(index=0, data=dict(self.DATA))
        assert datetime(2024, 5, 1, 12, 30, tzinfo=UTC) == entry.occurred_at
        assert datetime(2024, 5, 1, 12, 30, 1, 250000, tzinfo=UTC) == entry.recorded_at
        assert timedelta(0) == entry.occurred_at.utcoffset()

    def test_accessors_return_copies(self) -> None:
        """Changing what actor, targets or changes returned leaves the entry untouched."""
        entry = Entry(
            index=0,
            data={
                **self.DATA,
                "actor": {"type": "user", "id": "u-1"},
                "targets": [],
                "changes": [],
            },
        )
        entry.actor["id"] = "mallory"
        entry.targets.append({"type": "x", "id": "y"})
        entry.changes.append({"field": "x", "new": 1})
        expected = {"type": "user", "id": "u-1"}
        assert expected == entry.data["actor"]
        expected = []
        assert expected == entry.data["targets"]
        expected = []
        assert expected == entry.data["changes"]

    def test_get_returns_field_or_default(self) -> None:
        """get returns a stored field, or the default when the entry lacks it."""
        entry = Entry(index=0, data=dict(self.DATA))
        expected = "locked"
        assert expected == entry.get("reason")
        assert None is entry.get("metadata")
        expected = {}
        assert expected == entry.get("metadata", {})

    def test_to_json_includes_index(self) -> None:
        """to_json is the stored fields plus index, with index first."""
        entry = Entry(index=3, data=dict(self.DATA))
        expected = {"index": 3, **self.DATA}
        assert expected == entry.to_json()
        expected = "index"
        assert expected == next(iter(entry.to_json()))

    def test_entry_round_trips_a_prepared_doc(self) -> None:
        """An Entry over a prepared doc reads back what was prepared."""
        prepared = _prepare(_event(occurred_at="2024-05-01T14:30:00+02:00", targets=[("c", 5)]))
        entry = Entry(index=0, data=prepared.doc)
        assert datetime(2024, 5, 1, 12, 30, tzinfo=UTC) == entry.occurred_at
        expected = NOW
        assert expected == entry.recorded_at
        expected = [{"type": "c", "id": "5"}]
        assert expected == entry.targets
        assert prepared.id == entry.id


class TestUUID7:
    def test_layout(self) -> None:
        """uuid7 text is a valid RFC 9562 version-7 UUID carrying the given milliseconds."""
        import uuid

        from graven.core.ids import uuid7

        text = uuid7(lambda: 1_700_000_000_123_456_789, lambda n: b"\xff" * n)
        parsed = uuid.UUID(text)
        assert text == str(parsed)
        assert 7 == parsed.version
        assert uuid.RFC_4122 == parsed.variant
        assert 1_700_000_000_123 == parsed.int >> 80

    def test_ids_made_within_one_millisecond_sort_in_order(self) -> None:
        """The sub-millisecond time leads the random bits, so later ids sort higher (which lets
        the store settle a new id with one comparison against the greatest stored one)."""
        from graven.core.ids import uuid7

        times = iter([1_700_000_000_123_000_000, 1_700_000_000_123_000_500, 1_700_000_000_123_999_000])
        randoms = iter([b"\xff" * 10, b"\x00" * 10, b"\x7f" * 10])
        ids = [uuid7(lambda: next(times), lambda n: next(randoms)[:n]) for _ in range(3)]
        assert sorted(ids) == ids
        assert 3 == len(set(ids))


class TestDuplicateTargets:
    def test_repeated_target_is_rejected(self) -> None:
        """Naming the same target twice in one event is refused at the repeat."""
        exc = _rejected(_event(targets=[("customer", "c-1"), ("file", "f"), {"type": "customer", "id": "c-1"}]))
        expected = "targets[2]: must not repeat a target already named; got 'customer:c-1'"
        assert expected == str(exc)
