"""The fast paths of recording behave exactly as the code they speed up.

``prepare`` (its fast path ``model.prepare_fast`` is built on ``graven.core.schema``) is compared with
the full checks alone on generated events, valid and invalid: the same document and leaf bytes, or
the same error (field, rule, value), and the same number of ids drawn; and with the frozen outcomes
of a fixed corpus (``golden_outcomes.json``), so leaf bytes and messages never drift. (The fast path
was proven identical, on 12,000 generated events, to a frozen copy of the validation it replaced,
before that copy was removed.) ``RedactionPolicy`` and ``Trail._redacted`` are compared with a frozen
copy of the implementation they replaced (``redaction_reference``).
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graven.core import model
from graven.core.model import Actor, Change, Target
from graven.core.redaction import RedactionPolicy
from graven.trail import DEFAULT_POLICY, Trail
from tests.core import redaction_reference
from tests.core.golden import GOLDEN, golden_events, outcome_text

NOW = datetime(2026, 11, 26, 9, 30, 0, 250000, tzinfo=UTC)
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------------------------
# Generated events: mostly the common shape, with every kind of oddity mixed in.

odd_text = st.sampled_from(
    ["", " ", "\t", "a" * 200, "a" * 201, "x" * 1024, "x" * 1025, "\ud800", "a\udfffb", "é", "名前", "\U0001f600",
     "UPPER", "user.login", "a..b", "9", "web", "Web", "0"]
)  # fmt: skip
good_text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_. ", min_size=1, max_size=16).filter(str.strip)
good_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1), st.text(alphabet="abc@. -", max_size=8)
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53) - 2, 2**53 + 2),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, 1e21, 1e-7, 2.5, 2.0**53, 1e16]),
    st.text(max_size=8),
    odd_text,
)
keys = st.one_of(
    st.sampled_from(["a", "b", "id", "route", "token", "password", "ApiKey", "card_pan", "é", "\ue000", "\U0001f600"]),
    st.text(max_size=5),
)
odd_keys = st.one_of(keys, st.integers(-3, 3), st.just(None), st.sampled_from(["\ud800"]))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(keys, inner, max_size=3),
        st.dictionaries(odd_keys, inner, max_size=2),
    ),
    max_leaves=12,
)
odd_names = st.one_of(st.text(max_size=12), odd_text, st.none(), st.integers(), st.booleans(), st.lists(st.none()))


@st.composite
def mostly(draw: st.DrawFn, good: st.SearchStrategy[Any], odd: st.SearchStrategy[Any], odds: int = 8) -> Any:
    """A value from ``good``, or about once in ``odds`` draws one from ``odd``."""
    # Hypothesis favours 0 and the bounds: the odd branch sits in the middle to keep its share fair.
    return draw(odd) if draw(st.integers(0, odds - 1)) == odds // 2 else draw(good)


names = mostly(good_text, odd_names, 24)
free = mostly(good_values, json_values, 4)
ips = mostly(  # the odd ones: some valid, some not
    st.sampled_from(["10.0.0.1", "198.51.100.23", "2001:db8::1"]),
    st.one_of(
        st.sampled_from(["2001:DB8::0:1", "::ffff:1.2.3.4", " 10.0.0.1", "010.0.0.1", "256.1.1.1", "not an ip", "",
                         "fe80::1%eth0", "1.2.3"]),
        st.integers(),
    ),
)  # fmt: skip


@st.composite
def actors(draw: st.DrawFn) -> Any:
    kind = (draw(st.integers(0, 19)) + 10) % 20  # the special shapes 0-5 as often as any
    if kind == 0:
        return draw(st.one_of(good_text, odd_names))
    if kind == 1:
        return Actor(type=draw(st.sampled_from(["user", "service", "system"])), id=draw(st.none() | good_text))
    actor: dict[Any, Any] = {}
    if draw(st.booleans()):
        actor["type"] = draw(mostly(st.sampled_from(["user", "service", "system", "anonymous"]), odd_names))
    for key, values in (("id", names), ("name", names), ("ip", ips), ("user_agent", names), ("session", names)):
        if key == "id" or draw(st.integers(0, 2)):
            actor[key] = draw(values)
    if kind == 2:
        actor[draw(keys)] = "extra"
    return actor


@st.composite
def targets(draw: st.DrawFn) -> Any:
    kind = (draw(st.integers(0, 19)) + 10) % 20  # the special shapes 0-5 as often as any
    if kind == 0:
        return draw(
            st.one_of(st.none(), names, st.tuples(names, names), st.just(()), st.just({"type": "a", "id": "b"}))
        )
    if kind == 1:
        return [Target("customer", "c-1"), ("user", 7), ["file", "f-1", "report.pdf"]]
    items = []
    for _ in range(draw(st.integers(0, 3))):
        item: dict[Any, Any] = {
            "type": draw(mostly(st.sampled_from(["customer", "user"]), names)),
            "id": draw(mostly(good_text, st.one_of(names, st.integers(-5, 10**20), st.booleans()))),
        }
        if draw(st.booleans()):
            item["name"] = draw(names)
        if kind == 2:
            item[draw(keys)] = "x"
        if kind == 3:
            del item[draw(st.sampled_from(["type", "id"]))]
        items.append(item)
    if kind == 4 and items:
        items.append(dict(items[0]))
    if kind == 5:
        return items * 40  # past the limit of 100, or repeated targets
    return items


@st.composite
def changes(draw: st.DrawFn) -> Any:
    kind = (draw(st.integers(0, 19)) + 10) % 20  # the special shapes 0-5 as often as any
    if kind == 0:
        return draw(st.one_of(st.none(), st.just(()), st.just({}), names, st.just({"field": "a", "old": 1})))
    if kind == 1:
        return [Change("plan", "free", "pro"), Change("password", redacted=True, fingerprint="ab12")]
    items: list[Any] = []
    for _ in range(draw(st.integers(0, 3))):
        item: dict[Any, Any] = {"field": draw(mostly(st.sampled_from(["email", "billing.phone", "password"]), names))}
        shape = draw(st.integers(0, 15))
        if shape <= 11:
            if shape != 1:
                item["old"] = draw(free)
            if shape != 2:
                item["new"] = draw(free)
        elif shape == 12:
            item["redacted"] = True
            if draw(st.booleans()):
                item["fingerprint"] = draw(names)
        elif shape == 13:
            item["redacted"] = draw(st.one_of(st.booleans(), st.none(), st.integers(0, 1), names))
            if draw(st.booleans()):
                item["new"] = draw(free)
            if draw(st.booleans()):
                item["fingerprint"] = draw(names)
        elif shape == 14:
            item[draw(keys)] = draw(free)
        else:
            item = draw(st.one_of(st.just({}), st.just({"field": None, "old": 1}), names, st.just(["field"])))
        items.append(item)
    if kind == 2:
        return items * 400  # past the limit of 1000
    return tuple(items) if kind == 3 else items


times = st.one_of(
    st.datetimes(timezones=st.just(UTC)),
    st.datetimes(),
    st.datetimes(timezones=st.sampled_from([timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))])),
    st.sampled_from(["2026-11-25T10:00:00Z", "2026-11-25T10:00:00+02:00", "2026-11-25T10:00:00", "yesterday",
                     "1969-12-31T23:59:59Z", " 2026-01-01T00:00:00.5z ", "2026-11-25T10:00:00.123456Z",
                     "1969-12-31T23:59:59.999999Z", "2026-02-30T10:00:00.000000Z", "9999-12-31T23:59:59.999999Z"]),
    st.integers(),
)  # fmt: skip
objects = st.one_of(
    st.dictionaries(good_text, good_values, max_size=4),
    st.dictionaries(keys, free, max_size=4),
    st.dictionaries(odd_keys, json_values, max_size=3),
)

FIELD_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "v": mostly(st.just(1), st.sampled_from([1.0, True, 2, "1", None])),
    "id": names,
    "occurred_at": mostly(st.datetimes(datetime(1970, 1, 2), timezones=st.just(UTC)), times),
    "outcome": mostly(st.sampled_from(["success", "denied", "failure"]), odd_names),
    "reason": mostly(st.text(max_size=20), st.one_of(odd_names, st.just("r" * 70_000))),
    "source": mostly(st.sampled_from(["web", "api", "db", "job.nightly"]), odd_names),
    "tenant": names,
    "context": mostly(objects, st.one_of(odd_names, st.lists(names, max_size=1))),
    "metadata": mostly(objects, st.one_of(odd_names, st.just({"big": "m" * 70_000}), st.just({"n": [[[[1]]]] * 3}))),
}  # fmt: skip


@st.composite
def events(draw: st.DrawFn) -> dict[Any, Any]:
    """An event: usually the common valid shape, often with an oddity or a broken rule somewhere."""
    event: dict[Any, Any] = {
        "actor": draw(actors()),
        "action": draw(mostly(st.sampled_from(["user.login", "customer.plan.change", "x.y-z_1"]), odd_names)),
    }
    if draw(st.booleans()):
        event["targets"] = draw(targets())
    if draw(st.booleans()):
        event["changes"] = draw(changes())
    for name, strategy in FIELD_STRATEGIES.items():
        if draw(st.integers(0, 2)) == 0:
            event[name] = draw(strategy)
    if draw(st.integers(0, 30)) == 15:
        event[draw(st.sampled_from(["index", "recorded_at", "extra", "Actor"]))] = 1
    if draw(st.integers(0, 30)) == 15:
        del event["actor"]
    return event


def common_events() -> st.SearchStrategy[dict[str, Any]]:
    """Valid events in the everyday shape, which must all take the fast path."""
    return st.fixed_dictionaries(
        {
            "actor": st.fixed_dictionaries(
                {"type": st.just("user"), "id": good_text},
                optional={"name": good_text, "ip": st.sampled_from(["10.1.2.3", "2001:db8::5"]),
                          "user_agent": good_text},
            ),
            "action": st.sampled_from(["user.login", "customer.update", "invoice.void"]),
        },
        optional={
            "targets": st.lists(st.fixed_dictionaries({"type": good_text, "id": good_text | st.integers(0, 10**9)}),
                                max_size=3, unique_by=lambda t: (t["type"], str(t["id"]))),
            "outcome": st.sampled_from(["success", "denied", "failure"]),
            "reason": st.text(max_size=30),
            "changes": st.lists(st.fixed_dictionaries({"field": good_text, "old": good_values, "new": good_values}),
                                max_size=3),
            "source": st.sampled_from(["web", "api"]),
            "context": st.dictionaries(good_text, good_values, max_size=3),
            "metadata": st.dictionaries(good_text, good_values, max_size=3),
        },
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Running both implementations


def _counter() -> tuple[Callable[[], str], list[int]]:
    calls = [0]
    numbers = itertools.count()

    def new_id() -> str:
        calls[0] += 1
        return f"id-{next(numbers)}"

    return new_id, calls


def _outcome(prepare: Callable[..., Any], event: Any, now: datetime = NOW) -> tuple[Any, ...]:
    """What one prepare call did: its document, leaf and hash, or its error; and the ids it drew."""
    new_id, calls = _counter()
    try:
        result = prepare(copy.deepcopy(event), now=now, new_id=new_id)
    except Exception as exc:
        fields = (exc.field, exc.rule, repr(exc.value)) if isinstance(exc, model.ValidationError) else str(exc)
        return ("error", type(exc), fields, calls[0])
    return ("ok", result.doc, list(result.doc), result.leaf, result.leaf_hash, calls[0])


def _same(event: Any, now: datetime = NOW) -> tuple[Any, ...]:
    """prepare (the schema's fast path first) and the full checks alone: the same document and
    leaf, or the same error, and the same ids drawn."""
    actual = _outcome(model.prepare, event, now)
    assert _outcome(model._prepare_full, event, now) == actual
    return actual


class TestPrepareMatchesTheFullChecks:
    @SETTINGS
    @given(events())
    def test_any_event(self, event: dict[Any, Any]) -> None:
        """Valid or not, an event gets the same document and leaf, or the same error, as before."""
        _same(event)

    @SETTINGS
    @given(common_events())
    def test_common_events_take_the_fast_path(self, event: dict[str, Any]) -> None:
        """An everyday valid event is accepted by the fast path itself, with the reference's leaf."""
        assert model.prepare_fast(copy.deepcopy(event), NOW) is not None
        assert _same(event)[0] == "ok"

    @SETTINGS
    @given(events(), st.sampled_from([NOW, datetime(2026, 1, 1), datetime(2026, 1, 1, tzinfo=UTC)]))
    def test_any_clock(self, event: dict[Any, Any], now: datetime) -> None:
        """A naive clock reading is refused the same way (as recorded_at) on both paths."""
        _same(event, now)

    @pytest.mark.parametrize(
        "event",
        [
            {"actor": "u", "action": "a.b", "changes": [{"field": "f", "old": 2**60}]},
            {"actor": "u", "action": "a.b", "context": {"k": float("nan")}},
            {"actor": "u", "action": "a.b", "metadata": {"\ud800": 1}},
            {"actor": "u", "action": "a.b", "metadata": {"\U0001f600": 1, "\ue000": 2}},
            {"actor": "u", "action": "a.b", "changes": [{"field": "f", "new": 1.5}, {"field": "g", "old": 2.0}]},
            {"actor": {"id": "u", "ip": "2001:DB8::1"}, "action": "a.b", "targets": [{"type": "t", "id": 5}]},
            {"actor": {"id": "u"}, "action": "a.b", "targets": [{"type": "t", "id": 5}, {"type": "t", "id": "5"}]},
            {"actor": {"id": "u"}, "action": "a.b", "changes": [{"field": "f", "redacted": True, "old": 1}]},
            {"actor": {"id": "u"}, "action": "a.b", "changes": [{"field": "f", "redacted": False, "fingerprint": "x"}]},
            {
                "actor": {"id": "u"},
                "action": "a.b",
                "changes": [{"field": "f", "redacted": False, "fingerprint": "x", "new": 1}],
            },
            {"actor": {"id": "u"}, "action": "a.b", "changes": [{"field": "f", "fingerprint": "x", "old": 1}]},
            {"actor": {"id": "u"}, "action": "a.b", "changes": [{"field": "f", "redacted": True, "fingerprint": None}]},
            {"actor": {"id": "u"}, "action": "a.b", "changes": [{"field": "f", "redacted": 1, "new": 2}]},
            {"actor": {"id": "u"}, "action": "a.b", "changes": [{"field": "f", "redacted": 1}]},
            {"actor": {"id": "u"}, "action": "a.b", "changes": [{"field": "f"}]},
            {"actor": {"type": "system"}, "action": "a.b", "v": 1.0, "id": "é"},
            {"actor": {"type": "service"}, "action": "a.b"},
            {"actor": {"id": "u"}, "action": "a.b", "context": {"a": {"b": [1, "\ud83d"]}}},
        ],
    )
    def test_edge_cases(self, event: dict[str, Any]) -> None:
        """Hand-picked corners (floats, big ints, surrogates, odd keys, repeated targets) match too."""
        _same(event)

    def test_the_golden_corpus_keeps_its_outcomes(self) -> None:
        """Every event of the fixed corpus gets the frozen leaf hash or error: leaves never change."""
        frozen = json.loads(GOLDEN.read_text())
        events = golden_events()
        assert len(frozen) == len(events)
        for i, (event, expected) in enumerate(zip(events, frozen, strict=True)):
            assert expected == outcome_text(model.prepare, event), (i, event)

    @pytest.mark.parametrize("kind", [["user"], {"user": 1}, {"user"}])
    def test_unhashable_actor_type_is_refused_by_name(self, kind: Any) -> None:
        """An actor type that is a list, dict or set is a ValidationError on actor.type, not a crash."""
        with pytest.raises(model.ValidationError) as info:
            model.prepare({"actor": {"type": kind, "id": "u-1"}, "action": "a.b"}, now=NOW, new_id=lambda: "x")
        assert ("actor.type", "must be one of user, service, system, anonymous") == (info.value.field, info.value.rule)


# --------------------------------------------------------------------------------------------
# Redaction

POLICIES = [DEFAULT_POLICY, RedactionPolicy(fingerprint_key=b"k" * 32), RedactionPolicy(patterns=("email", "ip"))]


def _ref_policy(policy: RedactionPolicy) -> redaction_reference.RedactionPolicy:
    return redaction_reference.RedactionPolicy(policy.patterns, policy.fingerprint_key)


def _result(call: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        return ("ok", call())
    except Exception as exc:
        return ("error", type(exc), str(exc))


class TestRedactionMatchesTheReference:
    @SETTINGS
    @given(st.sampled_from(POLICIES), json_values)
    def test_mapping(self, policy: RedactionPolicy, value: Any) -> None:
        """Any JSON-ish value is redacted exactly as before."""
        expected = _result(lambda: _ref_policy(policy).mapping(copy.deepcopy(value)))
        assert expected == _result(lambda: policy.mapping(copy.deepcopy(value)))

    @SETTINGS
    @given(st.sampled_from(POLICIES), events())
    def test_shaping_an_event(self, policy: RedactionPolicy, event: dict[Any, Any]) -> None:
        """The redaction every recorded event goes through gives the same event, or the same error."""
        trail = Trail.__new__(Trail)
        trail.redaction = policy
        expected = _result(lambda: redaction_reference.redacted(_ref_policy(policy), copy.deepcopy(event)))
        actual = _result(lambda: trail._redacted(copy.deepcopy(event)))
        assert expected == actual

    def test_a_key_like_a_cached_path_is_judged_as_a_key(self) -> None:
        """Path verdicts are cached apart from key verdicts, so no key can read a path's verdict."""
        policy = RedactionPolicy()
        assert policy.is_secret("a.pan")
        assert {"\x00path:a.pan": "[redacted]"} == policy.mapping({"\x00path:a.pan": "v"})
        assert {"\x00path:a.b": "v"} == policy.mapping({"\x00path:a.b": "v"})
