"""Pure core: replaying changes into a state, and the stream rules (Hypothesis properties)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from graven.core.state import just_after, replay
from graven.core.streams import StreamPosition, first_gap, stream_of

TARGET = ("customer", "c-1")
FIELDS = st.sampled_from(["email", "plan", "password", "address.city"])
VALUES = st.one_of(st.integers(-1000, 1000), st.text(max_size=5), st.none(), st.booleans())
CHANGE = st.one_of(
    st.builds(lambda f, v: {"field": f, "new": v}, FIELDS, VALUES),
    st.builds(lambda f, v: {"field": f, "old": v}, FIELDS, VALUES),
    st.builds(lambda f: {"field": f, "redacted": True}, FIELDS),
)
ENTRY = st.tuples(st.booleans(), st.lists(CHANGE, max_size=4), st.integers(0, 59))


def doc(ours: bool, changes: list[dict[str, Any]], minute: int) -> dict[str, Any]:
    return {
        "action": "customer.update",
        "targets": [{"type": "customer", "id": "c-1" if ours else "c-2"}],
        "changes": changes,
        "occurred_at": f"2026-12-03T14:{minute:02d}:00.000000Z",
    }


def naive(entries: list[tuple[bool, list[dict[str, Any]], int]], as_of: str) -> dict[str, Any]:
    """Last write wins, written the plainest way."""
    out: dict[str, Any] = {}
    for ours, changes, minute in entries:
        if not ours or doc(ours, changes, minute)["occurred_at"] > as_of:
            continue
        for c in changes:
            if c.get("redacted"):
                out[c["field"]] = "[redacted]"
            elif "new" in c:
                out[c["field"]] = c["new"]
            else:
                out.pop(c["field"], None)
    return out


@given(st.lists(ENTRY, max_size=30), st.integers(0, 59))
def test_replay_is_last_write_wins_up_to_the_moment(entries: list[Any], minute: int) -> None:
    """Any sequence of changes replays to the last value of each field at or before the moment."""
    as_of = f"2026-12-03T14:{minute:02d}:00.000000Z"
    state = replay(TARGET, [(i, doc(*e)) for i, e in enumerate(entries)], as_of=as_of)
    assert naive(entries, as_of) == state.values()
    assert all(doc(*entries[i])["targets"][0]["id"] == "c-1" for i in state.indices)


@given(st.lists(ENTRY, max_size=30), st.integers(0, 30))
def test_at_index_equals_replaying_a_prefix(entries: list[Any], cut: int) -> None:
    """Replaying up to index N is replaying only the first N + 1 entries."""
    docs = [(i, doc(*e)) for i, e in enumerate(entries)]
    assert replay(TARGET, docs[: cut + 1]).to_json()["fields"] == replay(TARGET, docs, at_index=cut).to_json()["fields"]


@given(st.lists(st.tuples(st.sampled_from("ab"), st.integers(1, 4)), max_size=20))
def test_first_gap_finds_the_first_version_out_of_turn(pairs: list[tuple[str, int]]) -> None:
    """The first entry whose version is not one above its stream's previous is named; None if all are."""
    positions = [(i, StreamPosition("account", s, v)) for i, (s, v) in enumerate(pairs)]
    seen: dict[str, int] = {}
    expected = None
    for i, (s, v) in enumerate(pairs):
        if v != seen.get(s, 0) + 1:
            expected = i
            break
        seen[s] = v
    assert expected == first_gap(positions)


@given(st.one_of(st.none(), st.integers(), st.text(), st.dictionaries(st.text(max_size=3), st.integers(), max_size=3)))
def test_a_malformed_marker_is_no_stream(marker: Any) -> None:
    """Only a well-formed metadata.sourcing makes an entry part of a stream."""
    assert None is stream_of({"metadata": {"sourcing": marker}})
    good = {"stream": {"type": "account", "id": "a"}, "version": 1}
    assert StreamPosition("account", "a", 1) == stream_of({"metadata": {"sourcing": good}})


def test_just_after_is_one_microsecond_later() -> None:
    """The exclusive bound keeps the moment itself."""
    assert "2026-12-03T14:06:01.000000Z" == just_after("2026-12-03T14:06:00.999999Z")
    assert None is just_after("9999-12-31T23:59:59.999999Z")
