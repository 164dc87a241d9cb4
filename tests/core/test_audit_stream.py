"""The one-pass verification agrees with the whole-log verification: the same report for every
intact log, and None (so the precise diagnosis runs) wherever the rows disagree."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from graven.core import audit, merkle
from graven.core.audit_stream import verify_stream
from graven.core.note import Checkpoint, sign_checkpoint
from tests.core.test_audit import SIGNER, VERIFIER, build, tiles

bodies = st.lists(st.binary(min_size=1, max_size=24), min_size=0, max_size=70, unique=True)
chunks = st.sampled_from([1, 2, 4, 8, 16, 1 << 14])


def _both(
    entries: list[tuple[int, bytes]], rows: list[tuple[int, bytes]], notes: list[tuple[int, str]], chunk: int,
    witnessed: list[str] | None = None,
) -> tuple[audit.Report | None, audit.Report]:  # fmt: skip
    """Both checks of a log whose tree is given as ``merkle.append`` rows (stored as tiles)."""
    return _both_tiles(entries, tiles(rows), notes, chunk, witnessed)


def _both_tiles(
    entries: list[tuple[int, bytes]], stored: list[tuple[int, int, bytes]], notes: list[tuple[int, str]], chunk: int,
    witnessed: list[str] | None = None,
) -> tuple[audit.Report | None, audit.Report]:  # fmt: skip
    seen = witnessed or []
    streamed = verify_stream(iter(entries), iter(stored), notes, [VERIFIER], witnessed=seen, chunk=chunk)
    whole = audit.verify_log(entries, stored, notes, [VERIFIER], witnessed=seen)
    return streamed, whole


class TestIntactLogs:
    @given(bodies, st.integers(0, 9), chunks)
    def test_same_report_as_the_whole_log(self, entries: list[bytes], every: int, chunk: int) -> None:
        """Any intact log, checkpointed at any sizes, gets exactly verify_log's report."""
        streamed, whole = _both(*build(entries, every), chunk)
        assert streamed is not None
        assert whole.to_json() == streamed.to_json()
        assert streamed.ok

    @given(bodies.filter(len), st.data(), chunks)
    def test_a_bad_checkpoint_is_judged_alike(self, entries: list[bytes], data: st.DataObject, chunk: int) -> None:
        """A signed checkpoint whose root is not the log's (a fork), stored or witnessed, gets the same finding."""
        rows, tree, notes = build(entries)
        size = data.draw(st.integers(1, len(entries) + 2))
        forged = sign_checkpoint(Checkpoint("test.example/audit", size, merkle.leaf_hash(b"other")), SIGNER)
        if data.draw(st.booleans()):
            streamed, whole = _both(rows, tree, [*notes, (size, forged)], chunk)
        else:
            streamed, whole = _both(rows, tree, notes, chunk, witnessed=[forged])
        assert streamed is not None
        assert whole.to_json() == streamed.to_json()
        assert not streamed.ok

    def test_progress_per_chunk_and_reads_ahead_at_most_a_chunk(self) -> None:
        """Rows are pulled a chunk at a time (constant memory) and progress follows each chunk."""
        entries, tree, notes = build([b"e%d" % i for i in range(100)], 10)
        pulled = [0]

        def rows() -> Iterator[tuple[int, bytes]]:
            for row in entries:
                pulled[0] += 1
                yield row

        seen: list[tuple[int, int]] = []
        report = verify_stream(rows(), iter(tiles(tree)), notes, [VERIFIER], chunk=16,
                               progress=lambda done: seen.append((done, pulled[0])))  # fmt: skip
        assert report is not None
        assert report.ok
        assert [16, 32, 48, 64, 80, 96, 100] == [done for done, _ in seen]
        assert all(got <= done + 16 for done, got in seen)

    def test_chunk_must_be_a_power_of_two(self) -> None:
        with pytest.raises(ValueError, match="power of two"):
            verify_stream([], [], [], [VERIFIER], chunk=12)


class TestDamagedRows:
    @given(bodies.filter(len), st.data(), chunks)
    def test_any_damage_to_the_rows_hands_over(self, entries: list[bytes], data: st.DataObject, chunk: int) -> None:
        """A changed, missing, extra or swapped entry, or a changed, missing or extra tile hash: None,
        and verify_log finds damage."""
        rows, appended, notes = build(entries, 5)
        tree = tiles(appended)
        i = data.draw(st.integers(0, len(entries) - 1))
        damage = data.draw(st.sampled_from(["body", "node", "drop entry", "drop tile", "extra entry", "extra node",
                                            "swap"]))  # fmt: skip
        if damage == "body":
            rows[i] = (i, rows[i][1] + b"!")
        elif damage == "node":
            k = data.draw(st.integers(0, len(tree) - 1))
            level, index, blob = tree[k]
            at = data.draw(st.integers(0, len(blob) - 1))
            tree[k] = (level, index, blob[:at] + bytes([blob[at] ^ 1]) + blob[at + 1 :])
        elif damage == "drop entry":
            del rows[i]
        elif damage == "drop tile":
            del tree[data.draw(st.integers(0, len(tree) - 1))]
        elif damage == "extra entry":
            rows.append((len(rows), b"forged"))
        elif damage == "extra node":
            k = max(n for n, (level, _, _) in enumerate(tree) if level == 0)
            level, index, blob = tree[k]
            if len(blob) < merkle.TILE_WIDTH * merkle.HASH_SIZE:
                tree[k] = (0, index, blob + merkle.leaf_hash(b"forged"))
            else:
                tree.insert(k + 1, (0, index + 1, merkle.leaf_hash(b"forged")))
        else:
            j = data.draw(st.integers(0, len(entries) - 1))
            assume(i != j)
            rows[i], rows[j] = (i, rows[j][1]), (j, rows[i][1])
        streamed, whole = _both_tiles(rows, tree, notes, chunk)
        assert streamed is None
        assert not whole.ok


@pytest.mark.parametrize("chunk", [16, 256, 1 << 14])
def test_upper_tiles_are_checked(chunk: int) -> None:
    """Past 256 entries the tree has upper tiles: an intact log gets verify_log's report, and one
    altered hash of an upper tile hands over to verify_log, which finds it."""
    rows, appended, notes = build([b"e%d" % i for i in range(700)], 100)
    tree = tiles(appended)
    assert any(level == 1 for level, _, _ in tree)
    streamed, whole = _both_tiles(rows, tree, notes, chunk)
    assert streamed is not None
    assert streamed.ok
    assert whole.to_json() == streamed.to_json()
    k = next(n for n, (level, _, _) in enumerate(tree) if level == 1)
    level, index, blob = tree[k]
    tree[k] = (level, index, blob[:40] + bytes([blob[40] ^ 1]) + blob[41:])
    streamed, whole = _both_tiles(rows, tree, notes, chunk)
    assert streamed is None
    assert not whole.ok
