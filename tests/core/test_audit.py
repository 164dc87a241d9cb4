"""Hypothesis properties of whole-log verification, on in-memory rows (no database)."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from graven.core import audit, merkle
from graven.core.note import Checkpoint, Signer, sign_checkpoint

SIGNER = Signer.generate("test.example/audit")
VERIFIER = SIGNER.verifier()

bodies = st.lists(st.binary(min_size=1, max_size=24), min_size=1, max_size=60, unique=True)


def build(
    entries: list[bytes], checkpoint_every: int = 0
) -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]], list[tuple[int, str]]]:
    leaves = [merkle.leaf_hash(b) for b in entries]
    rows = merkle.append(0, [], leaves).rows
    sizes = sorted(
        {len(entries)} | (set(range(checkpoint_every, len(entries), checkpoint_every)) if checkpoint_every else set())
    )
    notes = [
        (n, sign_checkpoint(Checkpoint("test.example/audit", n, merkle.root_of(leaves[:n])), SIGNER)) for n in sizes
    ]
    return list(enumerate(entries)), list(enumerate(rows)), notes


def tiles(rows: list[tuple[int, bytes]]) -> list[tuple[int, int, bytes]]:
    """The C2SP tiles of a gapless run of ``merkle.append`` rows from index 0."""
    assert [i for i, _ in rows] == list(range(len(rows)))
    return [(level, idx, hashes) for (level, idx), _, hashes in merkle.tile_deltas(0, [r for _, r in rows])]


def check(
    entries: list[tuple[int, bytes]], rows: list[tuple[int, bytes]], notes: list[tuple[int, str]]
) -> audit.Report:
    return audit.verify_log(entries, tiles(rows), notes, [VERIFIER])


class TestVerifyLog:
    @given(bodies, st.integers(0, 7))
    def test_any_log_verifies(self, entries: list[bytes], every: int) -> None:
        """Any sequence of entries, appended and checkpointed, verifies."""
        report = check(*build(entries, every))
        assert report.ok, report.message
        assert len(entries) == report.entries

    @given(bodies, st.data())
    def test_modified_entry_found(self, entries: list[bytes], data: st.DataObject) -> None:
        """Changing any entry's bytes is reported as modified at that index."""
        i = data.draw(st.integers(0, len(entries) - 1))
        new = data.draw(st.binary(min_size=1, max_size=24))
        assume(new not in entries)
        rows, tree, notes = build(entries)
        rows[i] = (i, new)
        report = check(rows, tree, notes)
        assert (i, "modified") == (report.first_bad_index, report.kind)

    @given(bodies, st.data())
    def test_missing_entry_found(self, entries: list[bytes], data: st.DataObject) -> None:
        """Removing any entry (leaving a gap, or renumbering) is reported at that index."""
        i = data.draw(st.integers(0, len(entries) - 1))
        renumber = data.draw(st.booleans())
        rows, tree, notes = build(entries)
        del rows[i]
        if renumber:
            rows = [(k, body) for k, (_, body) in enumerate(rows)]
        report = check(rows, tree, notes)
        expected = "truncated" if i == len(entries) - 1 else "missing"
        assert (i, expected) == (report.first_bad_index, report.kind)

    @given(bodies, st.data())
    def test_inserted_entry_found(self, entries: list[bytes], data: st.DataObject) -> None:
        """A forged entry inserted anywhere (later ones moved up) is reported as inserted there."""
        i = data.draw(st.integers(0, len(entries)))
        forged = data.draw(st.binary(min_size=1, max_size=24))
        assume(forged not in entries)
        rows, tree, notes = build(entries)
        shifted = [body for _, body in rows]
        shifted.insert(i, forged)
        report = check(list(enumerate(shifted)), tree, notes)
        assert (i, "inserted") == (report.first_bad_index, report.kind)

    @given(bodies, st.data())
    def test_reordered_entries_found(self, entries: list[bytes], data: st.DataObject) -> None:
        """Swapping two entries is reported as reordered at the first of them."""
        assume(len(entries) >= 2)
        i, j = sorted(data.draw(st.lists(st.integers(0, len(entries) - 1), min_size=2, max_size=2, unique=True)))
        rows, tree, notes = build(entries)
        rows[i], rows[j] = (i, rows[j][1]), (j, rows[i][1])
        report = check(rows, tree, notes)
        assert (i, "reordered") == (report.first_bad_index, report.kind)

    @given(bodies, st.data())
    def test_truncated_everywhere_found(self, entries: list[bytes], data: st.DataObject) -> None:
        """Cutting the tail together with its tree rows is caught by the signed checkpoint."""
        cut = data.draw(st.integers(0, len(entries) - 1))
        rows, tree, notes = build(entries)
        report = check(rows[:cut], tree[:cut], notes)
        assert (cut, "truncated") == (report.first_bad_index, report.kind)

    @given(bodies, st.data())
    def test_rewritten_hashes_caught_by_checkpoint(self, entries: list[bytes], data: st.DataObject) -> None:
        """An entry changed with every stored hash recomputed is caught within its checkpoint range."""
        i = data.draw(st.integers(0, len(entries) - 1))
        new = data.draw(st.binary(min_size=1, max_size=24))
        assume(new not in entries)
        _, _, notes = build(entries, checkpoint_every=4)
        forged = list(entries)
        forged[i] = new
        rows, tree, _ = build(forged)
        report = check(rows, tree, notes)
        assert "modified" == report.kind
        assert report.first_bad_index is not None
        assert report.first_bad_index <= i < report.first_bad_index + 4

    @given(bodies)
    def test_other_key_is_forked(self, entries: list[bytes]) -> None:
        """Checkpoints signed by a key that is not trusted are reported as a fork."""
        rows, tree, notes = build(entries)
        report = audit.verify_log(rows, tiles(tree), notes, [Signer.generate("someone.else/log").verifier()])
        assert (0, "forked") == (report.first_bad_index, report.kind)


class TestRoots:
    @settings(max_examples=50)
    @given(st.lists(st.binary(min_size=32, max_size=32), max_size=70), st.data())
    def test_root_at_matches_reference(self, leaves: list[bytes], data: st.DataObject) -> None:
        """Roots read from precomputed levels equal the RFC 9162 root of the prefix."""
        size = data.draw(st.integers(0, len(leaves)))
        assert merkle.root_of(leaves[:size]) == audit.root_at(audit.tree_levels(leaves), size)
