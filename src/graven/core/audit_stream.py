"""Verification of a whole log in one pass: the common case, an intact log.

:func:`verify_stream` reads the stored entries beside the level-0 tiles (the stored leaf hashes),
in aligned chunks of ``CHUNK`` (a power of two) entries: it recomputes each chunk's leaves and every
subtree inside it with list comprehensions and keeps only the compact range (the O(log n) perfect
subtrees covering everything read so far), the tree heads at the sizes the checkpoints sign, the
leaves of ``log.restore`` entries, and one rebuilt hash per 256 leaves, against which the upper
tiles are checked at the end (memory grows by 32 bytes per 256 entries). The checkpoints are then
judged exactly as :func:`graven.core.audit.verify_log` judges them.

It MUST NOT report damage itself: at the first row that disagrees (a count, an index, a leaf or a
node) it returns None, and the caller runs :func:`graven.core.audit.verify_log`, which reads the
whole log into memory to locate and classify the damage precisely. So an intact log is verified in
one streaming pass, and a damaged one is reported exactly as before. Pure: rows are passed in.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from itertools import islice

from graven.core import merkle
from graven.core.audit import Problem, Report, judge, tree_levels
from graven.core.key_history import Trust
from graven.core.note import Checkpoint, NoteError, note_signatures

CHUNK = 1 << 14
_LEAF_PREFIX = hashlib.sha256(b"\x00")


def verify_stream(
    entries: Iterable[tuple[int, bytes]],
    tiles: Iterable[tuple[int, int, bytes]],
    checkpoints: Sequence[tuple[int, str]],
    trusted: Trust,
    *,
    witnessed: Sequence[str] = (),
    progress: Callable[[int], None] | None = None,
    restores: Sequence[tuple[int, bytes]] = (),
    chunk: int = CHUNK,
) -> Report | None:
    """The report of an intact log's rows (checkpoints judged as usual), or None where the rows
    disagree (then run :func:`graven.core.audit.verify_log` on the same snapshot). ``tiles`` are the
    stored (level, index, hashes) tiles, level 0 first, as :meth:`graven.store.Scan.tiles` gives them;
    ``chunk`` (a power of two) is how many entries are held at once."""
    if chunk < 1 or chunk & (chunk - 1):
        raise ValueError(f"chunk must be a power of two, got {chunk}")
    sizes = {size for _, note in (*checkpoints, *((0, note) for note in witnessed)) if (size := _signed_size(note))}
    passed = _pass(entries, tiles, sizes, {index for index, _ in restores}, progress, chunk)
    if passed is None:
        return None
    count, roots, kept = passed
    problems: list[Problem] = []
    return judge(
        problems, count, count, checkpoints, trusted, witnessed=witnessed, restores=restores,
        root=lambda size: roots[size] if size else merkle.EMPTY_ROOT, leaf=kept.__getitem__,
    )  # fmt: skip


def _signed_size(note: str) -> int | None:
    """The size a checkpoint note claims (its signature is checked later, when it is judged)."""
    try:
        text, _ = note_signatures(note)
        return Checkpoint.parse(text).size
    except (NoteError, ValueError):
        return None


class _LeafTiles:
    """The stored leaf hashes, read from the level-0 tiles as the entries need them; the first upper
    tile read (they follow the level-0 ones) and the rest are kept for the end."""

    def __init__(self, tiles: Iterable[tuple[int, int, bytes]]) -> None:
        self.rows = iter(tiles)
        self.buffered = bytearray()
        self.next_index = 0
        self.partial = False  # a partial tile was read: it must be the last of level 0
        self.upper: list[tuple[int, int, bytes]] = []
        self.done = False

    def take(self, n: int) -> bytes | None:
        """The next ``n`` stored leaf hashes, or None where the tiles cannot give them in order."""
        want = n * merkle.HASH_SIZE
        while len(self.buffered) < want and not self.done:
            row = next(self.rows, None)
            if row is None or row[0]:
                self.done = True
                if row is not None:
                    self.upper.append(row)
                break
            _, index, blob = row
            if index != self.next_index or self.partial or not blob or len(blob) % merkle.HASH_SIZE:
                return None
            self.partial = len(blob) < merkle.TILE_WIDTH * merkle.HASH_SIZE
            self.buffered += blob
            self.next_index += 1
        if len(self.buffered) < want:
            return None
        taken = bytes(self.buffered[:want])
        del self.buffered[:want]
        return taken

    def rest_upper(self) -> list[tuple[int, int, bytes]] | None:
        """The upper tiles, once every leaf was taken; None if leaf hashes are left over."""
        if self.buffered or (not self.done and self.take(1) is not None):
            return None
        self.upper += self.rows
        if any(level == 0 for level, _, _ in self.upper):
            return None
        return self.upper


def _pass(
    entries: Iterable[tuple[int, bytes]],
    tiles: Iterable[tuple[int, int, bytes]],
    sizes: set[int],
    keep: set[int],
    progress: Callable[[int], None] | None,
    chunk: int,
) -> tuple[int, dict[int, bytes], dict[int, bytes]] | None:
    """One pass: the entry count, the tree heads at ``sizes`` and the leaves at ``keep``; None at
    the first disagreement between the rows."""
    sha = hashlib.sha256
    copy = _LEAF_PREFIX.copy
    top = chunk.bit_length() - 1  # the level of a whole chunk's subtree
    wanted, kept_at = sorted(sizes), sorted(keep)  # looked up by bisection: a log may have many checkpoints
    entry_rows, stored = iter(entries), _LeafTiles(tiles)
    stack: list[bytes] = []  # the compact range: perfect subtrees of CHUNK leaves or more, largest first
    roots: dict[int, bytes] = {}
    kept: dict[int, bytes] = {}
    eights: list[bytes] = []  # the rebuilt hash of each whole group of 256 leaves (tile level 1)
    group: list[bytes] = []  # leaves of the group being filled, when a chunk is smaller than one
    start = 0
    while True:
        batch = list(islice(entry_rows, chunk))
        n = len(batch)
        if not n:
            break
        last = start + n - 1
        if batch[0][0] != start or batch[-1][0] != last:
            return None  # indices are unique and ordered: equal ends mean no gap or extra row
        leaves = []
        for _, body in batch:
            h = copy()
            h.update(body)
            leaves.append(h.digest())
        if stored.take(n) != b"".join(leaves):
            return None
        levels = [leaves]
        for _level in range(1, top + 1):
            prev = levels[-1]
            if len(prev) < 2:
                break
            levels.append([sha(b"\x01" + prev[i] + prev[i + 1]).digest() for i in range(0, len(prev) - 1, 2)])
        if top >= merkle.TILE_HEIGHT:
            eights += levels[merkle.TILE_HEIGHT] if len(levels) > merkle.TILE_HEIGHT else []
        else:
            for leaf in leaves:
                group.append(leaf)
                if len(group) == merkle.TILE_WIDTH:
                    eights.append(merkle.root_of(group))
                    group = []
        for size in wanted[bisect_right(wanted, start) : bisect_right(wanted, last + 1)]:
            roots[size] = _root(stack, levels, size - start)
        for index in kept_at[bisect_left(kept_at, start) : bisect_right(kept_at, last)]:
            kept[index] = leaves[index - start]
        if n == chunk:  # a whole chunk joins the compact range, completing larger subtrees
            node, done = levels[top][0], (last + 1) >> top
            while done & 1 == 0:
                node = sha(b"\x01" + stack.pop() + node).digest()
                done >>= 1
            stack.append(node)
        start = last + 1
        if progress is not None:
            progress(start)
        if n < chunk:
            break
    upper = stored.rest_upper()
    if upper is None or not _upper_tiles_match(upper, eights):
        return None
    return start, roots, kept


def _upper_tiles_match(upper: Sequence[tuple[int, int, bytes]], eights: Sequence[bytes]) -> bool:
    """Whether every hash of the upper tiles is the node rebuilt from the leaves (none extra)."""
    levels = tree_levels(list(eights))  # levels[h] is tree level TILE_HEIGHT + h
    size = merkle.HASH_SIZE
    for level, index, blob in upper:
        height = merkle.TILE_HEIGHT * (level - 1)
        rebuilt = levels[height] if height < len(levels) else []
        first = index * merkle.TILE_WIDTH
        hashes = [blob[k : k + size] for k in range(0, len(blob), size)]
        if not hashes or len(blob) % size or first + len(hashes) > len(rebuilt):
            return False
        if hashes != rebuilt[first : first + len(hashes)]:
            return False
    return True


def _root(stack: Sequence[bytes], levels: Sequence[Sequence[bytes]], rest: int) -> bytes:
    """The tree head of the leaves before this chunk (``stack``) and its first ``rest`` leaves."""
    parts = list(stack)
    offset = 0
    for level in reversed(range(rest.bit_length())):
        if rest >> level & 1:
            parts.append(levels[level][offset >> level])
            offset += 1 << level
    root = parts[-1]
    for part in reversed(parts[:-1]):
        root = merkle.node_hash(part, root)
    return root
