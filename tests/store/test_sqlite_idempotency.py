"""Idempotency by event id on SQLite, around the shortcut for ids above the greatest stored one."""

from __future__ import annotations

from graven.store.sqlite import SQLiteStore
from graven.trail import Trail


def _event(ident: str | None = None) -> dict[str, object]:
    event: dict[str, object] = {"actor": "u-1", "action": "user.login"}
    if ident is not None:
        event["id"] = ident
    return event


class TestRepeatedIds:
    def test_repeats_below_and_at_the_greatest_id_are_found(self, trail: Trail) -> None:
        """Ids equal to stored ones, whether the greatest stored id or not, append nothing."""
        first = trail.record_many([_event("zzz-high"), _event(), _event("aaa-low")])
        size = trail.size
        again = trail.record_many([_event("aaa-low"), _event("zzz-high"), _event(trail.get(first[1]).id)])
        assert [first[2], first[0], first[1]] == again
        assert size == trail.size

    def test_ids_above_the_greatest_are_appended(self, trail: Trail) -> None:
        """An id sorting above every stored one is new, and a repeat of it is then found."""
        low = trail.record(_event("m-1"))
        high = trail.record(_event("m-2"))
        assert high == low + 1
        assert [high, low] == trail.record_many([_event("m-2"), _event("m-1")])
        assert 2 == trail.size

    def test_non_ascii_ids_compare_as_stored(self, trail: Trail) -> None:
        """Text beyond ASCII sorts as SQLite stores it (UTF-8 bytes), so its repeats are found."""
        ids = ["é-1", "\U0001f600", "\uffff", "z"]
        indices = trail.record_many([_event(i) for i in ids])
        assert indices == trail.record_many([_event(i) for i in reversed(ids)])[::-1]
        assert len(ids) == trail.size

    def test_an_empty_log_has_no_ids(self, trail: Trail) -> None:
        """On a log without entries no id is reported as existing."""
        store = trail.store
        assert isinstance(store, SQLiteStore)
        with store.write() as tx:
            assert {} == tx.existing_ids(["a", "b"])
