"""Verification of a whole log in one pass and constant memory: the common case, an intact log.

:func:`verify_stream` reads the stored entries and tree rows side by side, in aligned chunks of
``CHUNK`` (a power of two) rows: it recomputes each chunk's leaves and every subtree inside it
with list comprehensions, checks them against the stored tree rows, and keeps only the compact
range (the O(log n) perfect subtrees covering everything read so far), the tree heads at the sizes
the checkpoints sign, and the leaves of ``log.restore`` entries. The checkpoints are then judged
exactly as :func:`graven.core.audit.verify_log` judges them.

It MUST NOT report damage itself: at the first row that disagrees (a count, an index, a leaf or a
node) it returns None, and the caller runs :func:`graven.core.audit.verify_log`, which reads the
whole log into memory to locate and classify the damage precisely. So an intact log is verified in
constant memory, and a damaged one is reported exactly as before. Pure: rows are passed in.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from itertools import islice

from graven.core import merkle
from graven.core.audit import Problem, Report, judge
from graven.core.key_history import Trust
from graven.core.note import Checkpoint, NoteError, note_signatures

CHUNK = 1 << 14
_LEAF_PREFIX = hashlib.sha256(b"\x00")


def verify_stream(
    entries: Iterable[tuple[int, bytes]],
    tree_rows: Iterable[tuple[int, bytes]],
    checkpoints: Sequence[tuple[int, str]],
    trusted: Trust,
    *,
    witnessed: Sequence[str] = (),
    progress: Callable[[int], None] | None = None,
    restores: Sequence[tuple[int, bytes]] = (),
    chunk: int = CHUNK,
) -> Report | None:
    """The report of an intact log's rows (checkpoints judged as usual), or None where the rows
    disagree (then run :func:`graven.core.audit.verify_log` on the same snapshot). ``chunk`` (a
    power of two) is how many rows are held at once."""
    if chunk < 1 or chunk & (chunk - 1):
        raise ValueError(f"chunk must be a power of two, got {chunk}")
    sizes = {size for _, note in (*checkpoints, *((0, note) for note in witnessed)) if (size := _signed_size(note))}
    passed = _pass(entries, tree_rows, sizes, {index for index, _ in restores}, progress, chunk)
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


def _pass(
    entries: Iterable[tuple[int, bytes]],
    tree_rows: Iterable[tuple[int, bytes]],
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
    entry_rows, node_rows = iter(entries), iter(tree_rows)
    stack: list[bytes] = []  # the compact range: perfect subtrees of CHUNK leaves or more, largest first
    roots: dict[int, bytes] = {}
    kept: dict[int, bytes] = {}
    start = 0
    while True:
        batch = list(islice(entry_rows, chunk))
        rows = list(islice(node_rows, len(batch) or 1))
        n = len(batch)
        if len(rows) != n:
            return None
        if not n:
            break
        last = start + n - 1
        if batch[0][0] != start or batch[-1][0] != last or rows[0][0] != start or rows[-1][0] != last:
            return None  # indices are unique and ordered: equal ends mean no gap or extra row
        leaves = []
        for _, body in batch:
            h = copy()
            h.update(body)
            leaves.append(h.digest())
        blobs = [blob for _, blob in rows]
        if leaves != [blob[:32] for blob in blobs]:
            return None
        levels = [leaves]
        for level in range(1, top + 1):
            prev = levels[-1]
            if len(prev) < 2:
                break
            made = [sha(b"\x01" + prev[i] + prev[i + 1]).digest() for i in range(0, len(prev) - 1, 2)]
            step, offset = 1 << level, 32 * level
            if made != [blob[offset : offset + 32] for blob in blobs[step - 1 :: step]]:
                return None
            levels.append(made)
        for size in wanted[bisect_right(wanted, start) : bisect_right(wanted, last + 1)]:
            roots[size] = _root(stack, levels, size - start)
        for index in kept_at[bisect_left(kept_at, start) : bisect_right(kept_at, last)]:
            kept[index] = leaves[index - start]
        if n == chunk:  # a whole chunk joins the compact range, completing larger subtrees
            node, level, done = levels[top][0], top, (last + 1) >> top
            while done & 1 == 0:
                node = sha(b"\x01" + stack.pop() + node).digest()
                level += 1
                done >>= 1
                if blobs[-1][32 * level : 32 * level + 32] != node:
                    return None
            stack.append(node)
        start = last + 1
        if progress is not None:
            progress(start)
        if n < chunk:
            break
    if next(node_rows, None) is not None:
        return None  # tree rows beyond the last entry
    return start, roots, kept


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
