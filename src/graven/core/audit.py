"""Verification of a whole log from its raw stored rows: pure, given the rows and trusted keys.

The entries' stored bytes are the only thing believed: every leaf is recomputed from them, the
tree is rebuilt, and the result is compared with the stored tiles, with every signed
checkpoint (whose signature MUST verify with a trusted key) and with checkpoints kept elsewhere
(witnesses). The report names the first bad index and the kind of damage:

- ``modified``  an entry's content differs from what was hashed into the log;
- ``missing``   an entry was removed (a gap, or later entries moved down to close it);
- ``inserted``  an entry that was never appended sits in the log;
- ``reordered`` entries were swapped;
- ``truncated`` the newest entries were cut off;
- ``forked``    the log disagrees with a checkpoint signed by the trusted key, or its checkpoints are
  signed by another key: its history was rewritten or replaced.
- ``key-history`` (found by ``Trail.verify`` with a key history) a key of the history is not
  announced by the ``key.rotate`` entry just before its first size: the history or the log was altered.

Checkpoints signed only by keys that a key history says are revoked or retired at their size are
not trusted and vouch for nothing; they are reported in the report's notices.

Lineages: a restore of an older backup that accepted the loss of entries (``graven restore
--accept-loss``) appends a ``log.restore`` entry at the first lost index, naming the lost range and
the signed checkpoint it supersedes. When that entry is in the tree and covered by a stored
checkpoint signed by the trusted key, witnessed checkpoints of the superseded lineage beyond the
entry and up to the superseded size are accepted (they can no longer be checked: their entries are
gone) and the loss is reported as a notice, not as damage. Nothing else is excused: a witnessed
checkpoint larger than the superseded one, or one that no restore entry explains, is still a fork.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any

import orjson

from graven.core import merkle
from graven.core.key_history import OutOfRange, Trust, open_trusted, trusted_verifiers
from graven.core.note import Checkpoint, NoteError

_CHUNK = 20_000
RESTORE_ACTION = "log.restore"


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: where, what kind, and a sentence a person understands.

    ``rank`` orders findings at the same index: the entries themselves (0) before signed
    checkpoints (1) before derived query columns (2).
    """

    index: int
    kind: str
    message: str
    rank: int = 0


@dataclass(frozen=True)
class Report:
    """The outcome of a verification. ``ok`` is true only when nothing at all was found."""

    size: int
    entries: int
    checkpoints: int
    problems: list[Problem] = field(default_factory=list)
    witnessed: int = 0
    trusted_keys: tuple[str, ...] = ()
    notices: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        return min(self.problems, key=lambda p: (p.index, p.rank)) if self.problems else None

    @property
    def first_bad_index(self) -> int | None:
        first = self.first
        return None if first is None else first.index

    @property
    def kind(self) -> str | None:
        first = self.first
        return None if first is None else first.kind

    @property
    def message(self) -> str:
        first = self.first
        if first is None:
            checked = [f"{self.checkpoints} signed checkpoint{'s' if self.checkpoints != 1 else ''}"]
            if self.witnessed:
                checked.append(f"{self.witnessed} witnessed checkpoint{'s' if self.witnessed != 1 else ''}")
            entries = f"{self.entries} entr{'y' if self.entries == 1 else 'ies'}"
            verb = "matches" if self.entries == 1 else "match"
            intact = f"The log is intact: {entries} {verb} the Merkle tree and " + " and ".join(checked) + "."
            return " ".join([intact, *self.notices])
        return first.message

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "first_bad_index": self.first_bad_index,
            "kind": self.kind,
            "message": self.message,
            "size": self.size,
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "witnessed": self.witnessed,
            "trusted_keys": list(self.trusted_keys),
            "problems": [{"index": p.index, "kind": p.kind, "message": p.message} for p in self.problems],
            "notices": list(self.notices),
        }


def leaf_hashes(
    rows: Iterable[tuple[int, bytes]], progress: Callable[[int], None] | None = None
) -> tuple[list[int], list[bytes]]:
    """Indices and recomputed leaf hashes of stored (index, leaf bytes) rows, in chunks for speed.

    ``progress`` is called with the number of rows hashed so far after each chunk.
    """
    indices: list[int] = []
    leaves: list[bytes] = []
    iterator = iter(rows)
    while chunk := list(islice(iterator, _CHUNK)):
        indices += [i for i, _ in chunk]
        leaves += [_leaf(body) for _, body in chunk]
        if progress is not None:
            progress(len(leaves))
    return indices, leaves


_LEAF_PREFIX = hashlib.sha256(b"\x00")


def _leaf(body: bytes, _copy: Callable[[], Any] = _LEAF_PREFIX.copy) -> bytes:
    h = _copy()
    h.update(body)
    digest: bytes = h.digest()
    return digest


def tree_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every perfect subtree hash of the tree over ``leaves``, level by level (level 0 = leaves)."""
    sha = hashlib.sha256
    levels = [list(leaves)]
    while len(levels[-1]) >= 2:
        prev = levels[-1]
        levels.append([sha(b"\x01" + prev[i] + prev[i + 1]).digest() for i in range(0, len(prev) - 1, 2)])
    return levels


def root_at(levels: Sequence[Sequence[bytes]], size: int) -> bytes:
    """The RFC 9162 root of the first ``size`` leaves, from precomputed perfect subtrees."""
    if size == 0:
        return merkle.EMPTY_ROOT
    parts: list[bytes] = []
    start = 0
    for level in reversed(range(size.bit_length())):
        if size >> level & 1:
            parts.append(levels[level][start >> level])
            start += 1 << level
    root = parts[-1]
    for part in reversed(parts[:-1]):
        root = merkle.node_hash(part, root)
    return root


def verify_log(
    entries: Iterable[tuple[int, bytes]],
    tiles: Iterable[tuple[int, int, bytes]],
    checkpoints: Sequence[tuple[int, str]],
    trusted: Trust,
    *,
    witnessed: Sequence[str] = (),
    progress: Callable[[int], None] | None = None,
    restores: Sequence[tuple[int, bytes]] = (),
    archived_below: int = 0,
) -> Report:
    """Check everything stored against itself, the signed checkpoints and the witnessed ones.

    ``tiles`` are the stored (level, index, hashes) C2SP tiles (see ``merkle.tile_of``). ``restores``
    are the stored (index, bytes) of the ``log.restore`` entries (see Lineages above). Entries below
    ``archived_below`` (a boundary a ``log.archive`` entry vouches for) may be missing: they were
    pruned after archiving, and their leaf hashes are taken from the tiles.
    """
    entry_indices, leaves = leaf_hashes(entries, progress)
    tree_indices, stored, upper = _tile_hashes(tiles)
    pruned = 0
    if archived_below:
        entry_indices, leaves, pruned = _fill_pruned(entry_indices, leaves, tree_indices, stored, archived_below)
    problems: list[Problem] = []
    count = len(entry_indices)
    tree_size = len(tree_indices)
    entries_contiguous = count == 0 or (entry_indices[0] == 0 and entry_indices[-1] == count - 1)
    tree_contiguous = tree_size == 0 or (tree_indices[0] == 0 and tree_indices[-1] == tree_size - 1)
    levels = tree_levels(leaves)
    if not (entries_contiguous and tree_contiguous and leaves == stored):
        problems += _compare_rows(entry_indices, leaves, tree_indices, stored)
    else:
        problems += _check_tiles(levels, upper)
    report = judge(
        problems, count, tree_size, checkpoints, trusted, witnessed=witnessed, restores=restores,
        root=lambda size: root_at(levels, size), leaf=leaves.__getitem__,
    )  # fmt: skip
    if pruned:
        report = replace(report, notices=(*report.notices, _pruned_notice(pruned, archived_below)))
    return report


def judge(
    problems: list[Problem],
    count: int,
    tree_size: int,
    checkpoints: Sequence[tuple[int, str]],
    trusted: Trust,
    *,
    witnessed: Sequence[str],
    restores: Sequence[tuple[int, bytes]],
    root: Callable[[int], bytes],
    leaf: Callable[[int], bytes],
) -> Report:
    """The report, once the rows were compared (``problems``): the signed and witnessed checkpoints
    are checked against ``root(size)``, the tree head of the first ``size`` recomputed leaves;
    ``leaf(index)`` is the recomputed leaf hash of a ``log.restore`` entry."""
    size = count
    untrusted: list[int] = []
    found, vouched = _check_checkpoints(checkpoints, trusted, root, size, witnessed=False, untrusted=untrusted)
    if not problems:
        # Row-level findings are precise; checkpoint ranges would only repeat them less exactly.
        problems += found
    notices: list[str] = [_untrusted_notice(untrusted)] if untrusted else []
    if not problems:
        # The last line of defence: a log consistent with itself but not with what a witness saw.
        # Whoever rewrote it may hold the key: only witnessed checkpoints that match vouch for a prefix.
        notes = list(witnessed)
        lineages = _lineages(restores, leaf, count, trusted, vouched)
        if lineages:
            notes, lineage_notices = _beside_lineages(notes, lineages, trusted, root, size)
            notices += lineage_notices
        found, _ = _check_checkpoints([(0, note) for note in notes], trusted, root, size, witnessed=True)
        problems += found
    return Report(
        size=max(tree_size, count),
        entries=count,
        checkpoints=len(checkpoints) - len(untrusted),
        problems=problems,
        witnessed=len(witnessed),
        trusted_keys=tuple(v.to_text() for v in trusted_verifiers(trusted)),
        notices=tuple(notices),
    )


def _fill_pruned(
    indices: list[int], leaves: list[bytes], tree_indices: list[int], stored: list[bytes], below: int
) -> tuple[list[int], list[bytes], int]:
    """Stand the stored leaf hashes in for the entries missing below ``below`` (pruned)."""
    if tree_indices[:1] != [0]:
        return indices, leaves, 0
    limit = min(below, len(stored))
    kept = bisect_left(indices, limit)  # indices ascend: those below the boundary come first
    if kept == limit:
        return indices, leaves, 0
    present = set(indices[:kept])
    missing = [i for i in range(limit) if i not in present]
    if not missing:
        return indices, leaves, 0
    merged = sorted([*zip(indices, leaves, strict=True), *((i, stored[i]) for i in missing)])
    return [i for i, _ in merged], [h for _, h in merged], len(missing)


def _pruned_notice(pruned: int, below: int) -> str:
    return (
        f"{pruned} entr{'y' if pruned == 1 else 'ies'} below index {below} {'was' if pruned == 1 else 'were'} "
        "pruned after archiving (their hashes are still checked); check the archives with --archive."
    )


@dataclass(frozen=True, slots=True)
class _Lineage:
    index: int  # the log.restore entry, at the first lost index
    lost_to: int
    number: int
    superseded: Checkpoint


def _lineages(
    restores: Sequence[tuple[int, bytes]],
    leaf: Callable[[int], bytes],
    count: int,
    trusted: Trust,
    vouched: int,
) -> list[_Lineage]:
    """The restore entries that may excuse checkpoints of a superseded lineage: in the tree as
    stored, covered by a trusted stored checkpoint, and naming a checkpoint signed by a trusted key
    beyond their own index."""
    out = []
    for index, body in restores:
        if not 0 <= index < min(count, vouched) or _leaf(body) != leaf(index):
            continue
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            continue
        meta = data.get("metadata") if isinstance(data, dict) and data.get("action") == RESTORE_ACTION else None
        lost = meta.get("lost") if isinstance(meta, dict) else None
        superseded_meta = meta.get("superseded") if isinstance(meta, dict) else None
        note = superseded_meta.get("note") if isinstance(superseded_meta, dict) else None
        if not isinstance(meta, dict) or not isinstance(lost, dict) or lost.get("from") != index:
            continue
        if not isinstance(note, str):
            continue
        try:
            superseded, _ = open_trusted(note, trusted)
        except NoteError:
            continue
        lost_to = lost.get("to")
        if isinstance(lost_to, int) and index < superseded.size <= lost_to:
            number = meta.get("lineage")
            out.append(_Lineage(index, lost_to, number if isinstance(number, int) else 1, superseded))
    return out


def _beside_lineages(
    notes: Sequence[str],
    lineages: Sequence[_Lineage],
    trusted: Trust,
    root: Callable[[int], bytes],
    size: int,
) -> tuple[list[str], list[str]]:
    """The witnessed notes still to check, and a notice per lineage naming the loss and the
    checkpoints of the superseded lineage accepted because of it."""
    remaining: list[str] = []
    accepted = [0] * len(lineages)
    for note in notes:
        try:
            checkpoint, _ = open_trusted(note, trusted)
        except NoteError:
            remaining.append(note)
            continue
        cp_size = checkpoint.size
        if cp_size <= size and root(cp_size) == checkpoint.root_hash:
            remaining.append(note)  # of the current lineage (or shared with it): checked as usual
            continue
        for k, lineage in enumerate(lineages):
            top = lineage.superseded
            if lineage.index < cp_size < top.size or (cp_size == top.size and checkpoint.root_hash == top.root_hash):
                accepted[k] += 1
                break
        else:
            remaining.append(note)
    notices = []
    for lineage, n in zip(lineages, accepted, strict=True):
        also = f", and {n} witnessed checkpoint{'s' if n != 1 else ''} of it {'were' if n != 1 else 'was'} accepted"
        notices.append(
            f"Lineage {lineage.number + 1}: entries {lineage.index}..{lineage.lost_to - 1} were lost when an older "
            f"backup was restored, as the log.restore entry at index {lineage.index} records; the lineage it "
            f"superseded ended at the checkpoint of size {lineage.superseded.size}{also if n else ''}."
        )
    return remaining, notices


def _untrusted_notice(sizes: list[int]) -> str:
    shown = ", ".join(str(s) for s in sorted(sizes)[:10]) + (", ..." if len(sizes) > 10 else "")
    return (
        f"{len(sizes)} stored checkpoint{'s' if len(sizes) != 1 else ''} (size {shown}) "
        f"{'are' if len(sizes) != 1 else 'is'} signed only by a key revoked or retired at that size: "
        "not trusted, and not counted above."
    )


def derived_problem(index: int) -> Problem:
    """The finding for query columns that disagree with an entry's stored content."""
    return Problem(
        index,
        "modified",
        f"Entry {index}: its indexed columns, target rows or stream index rows were edited and no longer "
        "match its content, so searches and aggregate streams would return wrong results.",
        rank=2,
    )


def _compare_rows(
    entry_indices: Sequence[int], leaves: Sequence[bytes], tree_indices: Sequence[int], stored: Sequence[bytes]
) -> list[Problem]:
    """Locate and classify the first place where the entries and the stored tree disagree."""
    entry_at = dict(zip(entry_indices, leaves, strict=True))
    tree_at = dict(zip(tree_indices, stored, strict=True))
    last = max(max(entry_at, default=-1), max(tree_at, default=-1))
    where_stored = {leaf: i for i, leaf in tree_at.items()}
    for i in range(last + 1):
        have, want = entry_at.get(i), tree_at.get(i)
        if have == want:
            continue
        if want is None:
            if i in tree_at or any(j > i for j in tree_at):
                return [Problem(i, "modified", f"Entry {i}: its stored tree hash was removed.")]
            return [
                Problem(
                    i,
                    "inserted",
                    f"Entry {i} was never appended to the log: it sits after the last entry of the "
                    f"Merkle tree (size {len(tree_at)}), so someone inserted it directly.",
                )
            ]
        if have is None:
            if not any(j > i for j in entry_at):
                return [
                    Problem(
                        i,
                        "truncated",
                        f"The log was truncated: entries from index {i} on ({last + 1 - i} of them) "
                        "are gone although the Merkle tree still records them.",
                    )
                ]
            return [Problem(i, "missing", f"Entry {i} was deleted: the log has a gap at index {i}.")]
        j = where_stored.get(have)
        if j is not None and j != i and entry_at.get(j) == want:
            return [_swapped(i, j)]
        if have == tree_at.get(i + 1):
            return [
                Problem(
                    i,
                    "missing",
                    f"Entry {i} was deleted and the later entries were renumbered to hide the gap.",
                )
            ]
        if entry_at.get(i + 1) == want:
            return [
                Problem(
                    i,
                    "inserted",
                    f"A forged entry was inserted at index {i}; the original entries {i} and after "
                    "were moved up by one.",
                )
            ]
        if j is not None and j != i:
            return [_swapped(i, j)]
        return [
            Problem(
                i,
                "modified",
                f"Entry {i} was modified after it was recorded: its content no longer matches the "
                "hash the log stored for it.",
            )
        ]
    return []


def _swapped(i: int, j: int) -> Problem:
    low, high = min(i, j), max(i, j)
    return Problem(
        low,
        "reordered",
        f"Entries {low} and {high} were swapped: each holds the content that was appended at the other's position.",
    )


def _tile_hashes(
    tiles: Iterable[tuple[int, int, bytes]],
) -> tuple[list[int], list[bytes], list[tuple[int, int, bytes]]]:
    """The stored leaf hashes with their indices (from the level-0 tiles), and the upper tiles."""
    indices: list[int] = []
    leaves: list[bytes] = []
    upper: list[tuple[int, int, bytes]] = []
    size = merkle.HASH_SIZE
    for level, index, blob in tiles:
        if level:
            upper.append((level, index, blob))
            continue
        count = len(blob) // size
        start = index * merkle.TILE_WIDTH
        indices += range(start, start + count)
        leaves += [blob[k : k + size] for k in range(0, count * size, size)]
    return indices, leaves, upper


def _check_tiles(levels: Sequence[Sequence[bytes]], upper: Sequence[tuple[int, int, bytes]]) -> list[Problem]:
    """Every hash of an upper tile must equal the node rebuilt from the leaves; none may be extra."""
    size = merkle.HASH_SIZE
    found: list[Problem] = []
    for level, index, blob in upper:
        height = merkle.TILE_HEIGHT * level
        rebuilt = levels[height] if height < len(levels) else []
        first = index * merkle.TILE_WIDTH
        for k in range(len(blob) // size):
            node = first + k
            if node < len(rebuilt) and blob[k * size : (k + 1) * size] == rebuilt[node]:
                continue
            step = 1 << height
            found.append(
                Problem(
                    node * step,
                    "modified",
                    f"The stored tree hash over entries {node * step}..{(node + 1) * step - 1} was altered; "
                    "the entries themselves match, but proofs served from this log would be wrong.",
                )
            )
            break
    return [min(found, key=lambda p: p.index)] if found else []


def _check_checkpoints(
    checkpoints: Sequence[tuple[int, str]],
    trusted: Trust,
    root: Callable[[int], bytes],
    size: int,
    *,
    witnessed: bool,
    good_size: int = 0,
    untrusted: list[int] | None = None,
) -> tuple[list[Problem], int]:
    """Findings from signed checkpoints, and the largest size they vouch for. Stored checkpoints
    signed only by keys not valid at their size (revoked or retired: see the key history) vouch
    for nothing; their sizes are added to ``untrusted`` to be reported."""
    problems: list[Problem] = []
    where = "witnessed" if witnessed else "stored"
    opened: list[tuple[int, Checkpoint]] = []
    for stored_size, note in checkpoints:
        try:
            checkpoint, _ = open_trusted(note, trusted)
        except NoteError as exc:
            if witnessed:
                continue  # a witness copy from another log or key says nothing about this one
            if isinstance(exc, OutOfRange) and untrusted is not None:
                untrusted.append(stored_size)
                continue
            keys = ", ".join(v.to_text() for v in trusted_verifiers(trusted)) or "none"
            problems.append(
                Problem(
                    0,
                    "forked",
                    f"The {where} checkpoint of size {stored_size} is not signed by the trusted key "
                    f"({keys}): {exc}. The log was replaced or rewritten by someone holding another key.",
                )
            )
            continue
        if not witnessed and checkpoint.size != stored_size:
            problems.append(
                Problem(
                    min(stored_size, checkpoint.size),
                    "modified",
                    f"A checkpoint was filed under size {stored_size} but signs size {checkpoint.size}.",
                )
            )
        opened.append((checkpoint.size, checkpoint))
    opened.sort(key=lambda item: item[0])
    for cp_size, checkpoint in opened:
        if cp_size > size:
            problems.append(
                Problem(
                    size,
                    "truncated",
                    f"The log has {size} entries but a {where} checkpoint signed {cp_size}: "
                    f"entries from index {size} on were cut off.",
                )
            )
            break
        if root(cp_size) != checkpoint.root_hash:
            kind = "forked" if witnessed else "modified"
            problems.append(
                Problem(
                    good_size,
                    kind,
                    f"The {where} checkpoint of size {cp_size} no longer matches the log: an entry "
                    f"between index {good_size} and {cp_size - 1} was changed, removed or added and "
                    "the stored hashes were recomputed to hide it"
                    + (" (the log's history forked from what the witness saw)." if witnessed else "."),
                )
            )
            break
        good_size = max(good_size, cp_size)
    if problems:
        # Forked-by-signature findings point at the first entry no trusted checkpoint vouches for.
        problems = [
            Problem(
                good_size if p.kind == "forked" and p.index == 0 and not witnessed else p.index, p.kind, p.message, 1
            )
            for p in problems
        ]
    return problems, good_size
