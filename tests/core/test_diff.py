"""Tests for graven.core.diff: snapshots of many object kinds, diffs and their replay."""

from __future__ import annotations

import sys
import types
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graven.core.diff import apply_changes, diff, join_path, snapshot, split_path
from graven.core.model import prepare

scalars = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=8)
keys = st.text(max_size=6)  # dots, backslashes and empty keys included on purpose
nested = st.recursive(
    st.dictionaries(keys, scalars | st.lists(scalars, max_size=3), max_size=4),
    lambda children: st.dictionaries(keys, scalars | children, max_size=4),
    max_leaves=20,
)


@given(nested)
def test_diff_of_a_value_with_itself_is_empty(x: dict[str, Any]) -> None:
    assert [] == diff(x, x)


@given(nested, nested)
def test_applying_the_changes_to_before_yields_after(before: dict[str, Any], after: dict[str, Any]) -> None:
    changes = diff(before, after)
    assert after == apply_changes(before, changes)
    fields = [c["field"] for c in changes]
    assert len(set(fields)) == len(fields)
    assert [split_path(f) for f in fields] == sorted(split_path(f) for f in fields)
    assert all("old" in c or "new" in c for c in changes)


@given(nested)
def test_creation_and_deletion(x: dict[str, Any]) -> None:
    created = diff(None, x)
    assert all("old" not in c for c in created)
    assert x == apply_changes(None, created)
    deleted = diff(x, None)
    assert all("new" not in c for c in deleted)
    assert {} == apply_changes(x, deleted)


@given(st.lists(keys, max_size=5))
def test_paths_round_trip(parts: list[str]) -> None:
    if parts:
        assert parts == split_path(join_path(parts))


def test_path_escaping() -> None:
    assert "a\\.b.c" == join_path(["a.b", "c"])
    assert "back\\\\slash" == join_path(["back\\slash"])
    changes = diff({"a.b": {"c": 1}}, {"a.b": {"c": 2}})
    assert [{"field": "a\\.b.c", "old": 1, "new": 2}] == changes


def test_nested_paths_and_only_changed_fields() -> None:
    before = {"name": "Ann", "address": {"city": "Oslo", "zip": "0150"}, "age": 30}
    after = {"name": "Ann", "address": {"city": "Bergen", "zip": "0150"}, "email": "a@x"}
    assert [
        {"field": "address.city", "old": "Oslo", "new": "Bergen"},
        {"field": "age", "old": 30},
        {"field": "email", "new": "a@x"},
    ] == diff(before, after)


def test_prefix() -> None:
    assert [{"field": "user.name", "old": "a", "new": "b"}] == diff({"name": "a"}, {"name": "b"}, prefix="user")


def test_lists_are_whole_values() -> None:
    assert [{"field": "tags", "old": ["a", "b"], "new": ["a", "c"]}] == diff({"tags": ["a", "b"]}, {"tags": ["a", "c"]})
    assert [] == diff({"tags": [{"a": 1}]}, {"tags": [{"a": 1}]})


def test_json_equality_rules() -> None:
    assert [] == diff({"n": 1}, {"n": 1.0})
    assert [{"field": "n", "old": 1, "new": True}] == diff({"n": 1}, {"n": True})
    assert [{"field": "n", "old": 0, "new": None}] == diff({"n": 0}, {"n": None})
    assert [{"field": "n", "old": {}, "new": 1}] == diff({"n": {}}, {"n": 1})


def test_mapping_on_one_side_only_is_one_change() -> None:
    assert [{"field": "a", "new": {}}] == diff({}, {"a": {}})
    assert [{"field": "a", "old": {"b": 1}}] == diff({"a": {"b": 1}}, {})


class Color(Enum):
    RED = "red"


@dataclass
class Address:
    city: str
    zip: str


@dataclass
class User:
    name: str
    address: Address
    roles: set[str] = field(default_factory=set)
    color: Color = Color.RED


def test_dataclass_inputs() -> None:
    before = User("Ann", Address("Oslo", "0150"), {"b", "a"})
    after = User("Ann", Address("Bergen", "0150"), {"a"})
    assert {"name": "Ann", "address": {"city": "Oslo", "zip": "0150"}, "roles": ["a", "b"], "color": "red"} == snapshot(
        before
    )
    assert [
        {"field": "address.city", "old": "Oslo", "new": "Bergen"},
        {"field": "roles", "old": ["a", "b"], "new": ["a"]},
    ] == diff(before, after)


class PydanticLike:
    """Duck-typed pydantic v2 model: only model_dump(mode="json") matters."""

    def __init__(self, **values: Any) -> None:
        self._values = values

    def model_dump(self, *, mode: str = "python") -> dict[str, Any]:
        assert "json" == mode
        return dict(self._values)


def test_pydantic_like_inputs() -> None:
    assert [{"field": "plan", "old": "free", "new": "pro"}] == diff(
        PydanticLike(id=1, plan="free"), PydanticLike(id=1, plan="pro")
    )


class Plain:
    def __init__(self, name: str, limit: Decimal) -> None:
        self.name = name
        self.limit = limit
        self._cache = "private"


def test_plain_object_inputs() -> None:
    assert {"name": "x", "limit": "0.1"} == snapshot(Plain("x", Decimal("0.1")))
    assert [{"field": "limit", "old": 1, "new": 2.5}] == diff(Plain("x", Decimal(1)), Plain("x", Decimal("2.5")))


def test_value_conversions() -> None:
    u = uuid.UUID(int=5)
    snap = snapshot(
        {
            "dt": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
            "d": date(2024, 1, 2),
            "t": time(3, 4),
            "dec_int": Decimal("42"),
            "dec_exact": Decimal("0.5"),
            "dec_inexact": Decimal("0.1"),
            "dec_nan": Decimal("NaN"),
            "uuid": u,
            "blob": b"\x00\x01\x02",
            "set": frozenset({3, 1, 2}),
            "mixed_set": {1, "a"},
            "tuple": (1, 2),
            "big": 2**60,
            "nan": float("nan"),
            "enum": Color.RED,
            1: "int key",
        }
    )
    assert {
        "dt": "2024-01-02T03:04:05+00:00",
        "d": "2024-01-02",
        "t": "03:04:00",
        "dec_int": 42,
        "dec_exact": 0.5,
        "dec_inexact": "0.1",
        "dec_nan": "NaN",
        "uuid": str(u),
        "blob": "<3 bytes>",
        "set": [1, 2, 3],
        "mixed_set": ["a", 1],  # by canonical JSON text when types differ
        "tuple": [1, 2],
        "big": str(2**60),
        "nan": "nan",
        "enum": "red",
        "1": "int key",
    } == snap


def test_depth_is_bounded_and_cycles_refused() -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    with pytest.raises(ValueError, match="deeper than 32"):
        snapshot(cyclic)
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(30):
        deep = {"k": deep}
    assert snapshot(deep)


def test_snapshot_refuses_leaf_values() -> None:
    with pytest.raises(TypeError):
        snapshot(42)


def test_sqlalchemy_instances_use_loaded_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    class Attr:
        def __init__(self, key: str) -> None:
            self.key = key

    class Mapped:
        def __init__(self) -> None:
            self.id = 7
            self.name = "n"
            self.helper = "not a column"

    class State:
        mapper = types.SimpleNamespace(column_attrs=[Attr("id"), Attr("name"), Attr("deferred")])

        def __init__(self, obj: Mapped) -> None:
            self.dict = {"id": obj.id, "name": obj.name}  # "deferred" not loaded: never fetched

    def inspect(obj: Any, raiseerr: bool = True) -> Any:
        return State(obj) if isinstance(obj, Mapped) else None

    fake = types.ModuleType("sqlalchemy")
    fake.inspect = inspect  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sqlalchemy", fake)
    assert {"id": 7, "name": "n"} == snapshot(Mapped())
    assert {"a": 1} == snapshot({"a": 1})


def test_changes_are_accepted_by_the_model() -> None:
    changes = diff(User("Ann", Address("Oslo", "1")), User("Bo", Address("Oslo", "2")), prefix="user")
    prepared = prepare(
        {"action": "user.update", "actor": "u-1", "changes": changes},
        now=datetime(2024, 1, 1, tzinfo=UTC),
        new_id=lambda: "id-1",
    )
    assert changes == prepared.doc["changes"]
