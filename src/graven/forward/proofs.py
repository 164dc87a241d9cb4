"""Proof-carrying delivery: the proof record sent after each batch, and checking what a receiver got.

After entries ``first .. end - 1`` a forwarder sends one proof record::

    {"proof": {"version": 1, "first": A, "end": B, "tree_size": S, "checkpoint": "<signed note>",
               "frontier": [...], "prefix_proof": [...], "previous_size": P, "consistency": [...]}}

(hashes in base64). ``frontier`` holds the hashes of the perfect subtrees covering entries
``0 .. A - 1`` (one per set bit of A, largest first), so the tree of the first B entries has the
root ``fold(frontier + leaf hashes of A .. B - 1)``; ``prefix_proof`` is the RFC 9162 consistency
proof from that tree (size B) to the signed checkpoint (size S >= B), and ``consistency`` the one
from the checkpoint sent before (size P) to this one. A receiver that checks the checkpoint's
signature and both proofs knows that every entry of the batch sits, at its index, in the signed
tree, and that the log never forked between two checkpoints it was sent.

:class:`StreamCheck` checks a stream of native records (entries and proof records, in the order
they were received) with nothing but the log's public key. It is pure: the caller reads the lines.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from graven.core import canonical, merkle
from graven.core.note import NoteError, Verifier, open_checkpoint

VERSION = 1


def _b64(hashes: Sequence[bytes]) -> list[str]:
    return [base64.b64encode(h).decode() for h in hashes]


def proof_record(
    *,
    first: int,
    end: int,
    tree_size: int,
    checkpoint: str,
    frontier: Sequence[bytes],
    prefix_proof: Sequence[bytes],
    previous_size: int,
    consistency: Sequence[bytes],
) -> dict[str, Any]:
    """The proof record that follows entries ``first .. end - 1``."""
    return {
        "proof": {
            "version": VERSION,
            "first": first,
            "end": end,
            "tree_size": tree_size,
            "checkpoint": checkpoint,
            "frontier": _b64(frontier),
            "prefix_proof": _b64(prefix_proof),
            "previous_size": previous_size,
            "consistency": _b64(consistency),
        }
    }


def leaf_of(entry: Mapping[str, Any]) -> bytes:
    """The leaf bytes of a native record: RFC 8785 of every field except ``index`` and ``leaf_hash``."""
    return canonical.canonical({k: v for k, v in entry.items() if k not in ("index", "leaf_hash")})


@dataclass(frozen=True, slots=True)
class Problem:
    """The first thing wrong with a received stream."""

    index: int | None
    kind: str  # missing, altered, reordered, unproven, forked, malformed, signature
    message: str


@dataclass(frozen=True, slots=True)
class StreamReport:
    entries: int
    duplicates: int
    proofs: int
    first: int | None
    end: int
    signed_size: int
    problem: Problem | None

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def message(self) -> str:
        if self.problem is not None:
            where = f"index {self.problem.index}" if self.problem.index is not None else "the stream"
            return f"{where} ({self.problem.kind}): {self.problem.message}"
        if self.first is None:
            return "no entries"
        resent = f", {self.duplicates} re-sent copies identical to the first" if self.duplicates else ""
        return (
            f"entries {self.first}..{self.end - 1} ({self.entries} received{resent}), all in order and "
            f"inside {self.proofs} signed checkpoint(s), the newest of size {self.signed_size}"
        )

    def to_json(self) -> dict[str, Any]:
        problem = self.problem
        return {
            "ok": self.ok,
            "first": self.first,
            "end": self.end,
            "entries": self.entries,
            "duplicates": self.duplicates,
            "proofs": self.proofs,
            "signed_size": self.signed_size,
            "first_bad_index": None if problem is None else problem.index,
            "kind": None if problem is None else problem.kind,
            "message": self.message,
        }


class _Stop(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


def _stop(index: int | None, kind: str, message: str) -> _Stop:
    return _Stop(Problem(index, kind, message))


class StreamCheck:
    """Feed it records in the order received; :meth:`report` names the first problem, if any."""

    def __init__(self, verifiers: Sequence[Verifier]) -> None:
        self.verifiers = list(verifiers)
        self.start: int | None = None
        self.next = 0
        self.hashes = bytearray()  # leaf hashes of start .. next - 1
        self.gap: tuple[int, int] | None = None  # (first missing index, the later index seen instead)
        self.covered = 0
        self.signed: tuple[int, bytes] | None = None
        self.roots: dict[int, bytes] = {}  # every signed tree size verified so far, with its root
        self.framed: int | None = None  # the receiver's own frontier covers entries before this index
        self.frontier: list[bytes] = []
        self.entries = self.duplicates = self.proofs = 0
        self.problem: Problem | None = None

    def feed_line(self, line: bytes, where: str) -> None:
        """One received line: a native record, or an RFC 5424 message whose MSG is one."""
        if self.problem is not None or not line.strip():
            return
        if line.startswith(b"<"):
            payload = syslog_payload(line)
            if payload is None:
                self.problem = Problem(None, "malformed", f"{where} is not an RFC 5424 message")
                return
            line = payload
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            self.problem = Problem(
                self.next if self.start is not None else None, "malformed", f"{where} is not JSON ({exc})"
            )
            return
        self.feed(value, where)

    def feed(self, record: Any, where: str = "a record") -> None:
        if self.problem is not None:
            return
        try:
            if isinstance(record, dict) and isinstance(record.get("proof"), dict) and "index" not in record:
                self._proof(record["proof"], where)
            elif isinstance(record, dict) and type(record.get("index")) is int and record["index"] >= 0:
                self._entry(record, where)
            else:
                raise _stop(None, "malformed", f"{where} is neither an entry with an index nor a proof")
        except _Stop as stop:
            self.problem = stop.problem

    def _leaf_hash(self, index: int) -> bytes:
        assert self.start is not None
        at = (index - self.start) * 32
        return bytes(self.hashes[at : at + 32])

    def _entry(self, entry: dict[str, Any], where: str) -> None:
        index = entry["index"]
        try:
            leaf = merkle.leaf_hash(leaf_of(entry))
        except canonical.CanonicalError as exc:
            raise _stop(index, "altered", f"{where}: the entry cannot be encoded canonically ({exc})") from None
        claimed = entry.get("leaf_hash")
        if claimed is not None and claimed != leaf.hex():
            raise _stop(index, "altered", f"{where}: the entry's content does not match its leaf_hash")
        self.entries += 1
        if self.start is None:
            self.start, self.next = index, index
        if index == self.next:
            if self.gap is not None:
                missing, seen = self.gap
                raise _stop(missing, "reordered", f"entry {missing} arrived after entry {seen} ({where})")
            self.hashes += leaf
            self.next += 1
        elif index > self.next:
            if self.gap is None:
                self.gap = (self.next, index)
        elif index < self.start:
            raise _stop(index, "reordered", f"entry {index} arrived after entry {self.next - 1} ({where})")
        elif self._leaf_hash(index) == leaf:
            self.duplicates += 1
        else:
            raise _stop(index, "altered", f"entry {index} arrived twice with different content ({where})")

    def _proof(self, proof: dict[str, Any], where: str) -> None:
        try:
            first, end, size = (int(proof[k]) for k in ("first", "end", "tree_size"))
            note = str(proof["checkpoint"])
            frontier, prefix, consistency = (_hashes(proof[k]) for k in ("frontier", "prefix_proof", "consistency"))
            previous = int(proof["previous_size"])
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise _stop(None, "malformed", f"{where}: a proof record lacks a field or has a bad one") from None
        if self.gap is not None and self.gap[0] < end:
            missing, seen = self.gap
            raise _stop(missing, "missing", f"entry {missing} never arrived (entry {seen} came instead)")
        if self.start is None or first < self.start:
            missing = first if self.start is None else min(first, self.start)
            raise _stop(missing, "missing", f"the proof in {where} covers entry {missing}, which never arrived")
        if end > self.next:
            raise _stop(
                self.next,
                "missing",
                f"the proof in {where} covers entries up to {end - 1}; entry {self.next} never arrived",
            )
        try:
            checkpoint, _ = open_checkpoint(note, self.verifiers)
        except NoteError as exc:
            raise _stop(first, "signature", f"the checkpoint in {where} is not signed by the key: {exc}") from None
        if checkpoint.size != size or not first <= end <= size:
            raise _stop(first, "malformed", f"{where}: sizes do not agree (batch {first}..{end}, tree {size})")
        if self.framed is not None and self.framed <= first:
            # Past the first proof the receiver's own leaves give the frontier: the sender's is not needed.
            grown = merkle.append(self.framed, self.frontier, [self._leaf_hash(i) for i in range(self.framed, first)])
            frontier, self.framed, self.frontier = grown.frontier, first, grown.frontier
        leaves = [self._leaf_hash(i) for i in range(first, end)]
        try:
            grown = merkle.append(first, frontier, leaves)
        except merkle.ProofError as exc:
            raise _stop(first, "malformed", f"{where}: bad frontier ({exc})") from None
        root = grown.root
        if not merkle.verify_consistency(end, size, root, checkpoint.root_hash, prefix) and not (
            end == size and root == checkpoint.root_hash
        ):
            raise _stop(
                first,
                "altered",
                f"entries {first}..{end - 1} are not the ones in the signed tree of size {size} "
                "(an entry or a leaf hash was changed)",
            )
        if self.framed is None or self.framed < end:
            self.framed, self.frontier = end, grown.frontier  # proven: it yields a signed root
        known = self.roots.get(size)
        if known is not None and known != checkpoint.root_hash:
            raise _stop(first, "forked", f"two different signed trees of size {size}")
        if self.roots and previous > 0:
            old_root = self.roots.get(previous)
            if old_root is None:
                raise _stop(first, "forked", f"{where} follows a checkpoint of size {previous} that was never received")
            same = previous == size and old_root == checkpoint.root_hash
            if not same and not merkle.verify_consistency(previous, size, old_root, checkpoint.root_hash, consistency):
                raise _stop(
                    first, "forked", f"the signed tree of size {size} does not extend the one of size {previous}"
                )
        self.roots[size] = checkpoint.root_hash
        self.signed = max(self.signed or (0, b""), (size, checkpoint.root_hash))
        self.covered = max(self.covered, end)
        self.proofs += 1

    def report(self) -> StreamReport:
        problem = self.problem
        if problem is None and self.gap is not None:
            missing, seen = self.gap
            problem = Problem(missing, "missing", f"entry {missing} never arrived (entry {seen} came instead)")
        if problem is None and self.start is not None and self.covered < self.next:
            at = max(self.covered, self.start)
            problem = Problem(at, "unproven", f"entries {at}..{self.next - 1} arrived without a proof covering them")
        return StreamReport(
            entries=self.entries,
            duplicates=self.duplicates,
            proofs=self.proofs,
            first=self.start,
            end=self.next,
            signed_size=self.signed[0] if self.signed else 0,
            problem=problem,
        )


def syslog_payload(line: bytes) -> bytes | None:
    """The MSG of an RFC 5424 message (None when the line is not one): the six header fields, then
    the structured data ("-" or elements whose values escape '"', '\\' and ']'), then MSG."""
    parts = line.rstrip(b"\r\n").split(b" ", 6)
    if len(parts) < 7 or not parts[0].startswith(b"<") or not parts[0].endswith(b">1"):
        return None
    rest = parts[6]
    if rest.startswith(b"-"):
        return rest[2:]
    at = 0
    while at < len(rest) and rest[at : at + 1] == b"[":
        quoted = False
        at += 1
        while at < len(rest):
            ch = rest[at : at + 1]
            if quoted and ch == b"\\":
                at += 2
                continue
            if ch == b'"':
                quoted = not quoted
            elif ch == b"]" and not quoted:
                break
            at += 1
        else:
            return None
        at += 1
    return rest[at + 1 :] if at > 0 else None


def _hashes(value: Any) -> list[bytes]:
    if not isinstance(value, list):
        raise TypeError("not a list")
    out = [base64.b64decode(h, validate=True) for h in value]
    if any(len(h) != merkle.HASH_SIZE for h in out):
        raise ValueError("not a hash")
    return out


def check_lines(lines: Iterable[tuple[bytes, str]], verifiers: Sequence[Verifier]) -> StreamReport:
    """Check (line, where) pairs in the order received."""
    check = StreamCheck(verifiers)
    for line, where in lines:
        check.feed_line(line, where)
        if check.problem is not None:
            break
    return check.report()
