"""A log's key history: which verifier keys vouch for checkpoints of which tree sizes.

A log that rotates its signing key is checked against the history of its keys, one line each:

    # graven key history
    key <vkey> from <size> [until <size>] [revoked <size>]

A key is valid for checkpoints of tree size ``from <= size < end``, where ``end`` is the smaller of
``until`` (the end of the overlap after the next key took over) and ``revoked`` (the point from which
a compromised key is no longer believed); a key without either stays valid. A checkpoint is trusted
when at least one signature on it is by a key valid at its size. A checkpoint whose only good
signatures are by keys not valid at its size MUST NOT be trusted: :func:`open_trusted` raises
:class:`OutOfRange` for it, so that callers can report it rather than believe it.

Pure: the history comes in as text and goes out as text; nothing here reads a file.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import orjson

from graven.core.note import Checkpoint, NoteError, NoteSignature, SignatureError, Verifier, open_checkpoint

HEADER = "# graven key history"
ROTATE_ACTION = "key.rotate"
MAX_SIZE = 2**63 - 1


class OutOfRange(SignatureError):
    """Every good signature on a checkpoint is by a key not valid at its size (revoked or retired)."""


@dataclass(frozen=True, slots=True)
class HistoryKey:
    """One verifier key and the tree sizes it vouches for (see the module doc)."""

    verifier: Verifier
    start: int
    until: int | None = None
    revoked: int | None = None

    @property
    def end(self) -> int | None:
        """The first size this key no longer vouches for (None: no end)."""
        ends = [e for e in (self.until, self.revoked) if e is not None]
        return min(ends) if ends else None

    def valid_at(self, size: int) -> bool:
        end = self.end
        return self.start <= size and (end is None or size < end)

    def to_line(self) -> str:
        line = f"key {self.verifier.to_text()} from {self.start}"
        if self.until is not None:
            line += f" until {self.until}"
        if self.revoked is not None:
            line += f" revoked {self.revoked}"
        return line


@dataclass(frozen=True, slots=True)
class KeyHistory:
    """The keys of one log, oldest first; every key has the same name (the log's origin)."""

    keys: tuple[HistoryKey, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise NoteError("a key history needs at least one key")
        seen: set[tuple[str, int]] = set()
        for key in self.keys:
            ident = (key.verifier.name, key.verifier.key_id)
            if ident in seen:
                raise NoteError(f"the key {key.verifier.to_text()} appears twice in the key history")
            seen.add(ident)

    @classmethod
    def single(cls, verifier: Verifier) -> KeyHistory:
        """The history of a log that never rotated: one key, valid from the start."""
        return cls((HistoryKey(verifier, 0),))

    @property
    def verifiers(self) -> list[Verifier]:
        return [key.verifier for key in self.keys]

    @property
    def current(self) -> HistoryKey:
        """The newest key (the one the log signs with now)."""
        return self.keys[-1]

    def find(self, text: str) -> HistoryKey:
        """The key named by its verifier text or its 8 hex digit key id."""
        wanted = text.strip()
        for key in self.keys:
            if wanted in (key.verifier.to_text(), f"{key.verifier.key_id:08x}"):
                return key
        known = ", ".join(f"{k.verifier.key_id:08x}" for k in self.keys)
        raise NoteError(f"key {wanted!r} is not in the key history (its keys: {known})")

    def rotated(self, new: Verifier, start: int, overlap: int) -> KeyHistory:
        """This history with ``new`` valid from ``start``; the previous key stays valid for
        ``overlap`` more sizes (its checkpoints then carry both signatures)."""
        if new.name != self.current.verifier.name:
            raise NoteError(f"a new key must keep the log's name {self.current.verifier.name!r}, not {new.name!r}")
        if start <= self.current.start:
            raise NoteError(f"the new key must start after size {self.current.start}, got {start}")
        old = replace(self.current, until=start + overlap)
        return KeyHistory((*self.keys[:-1], old, HistoryKey(new, start)))

    def revoked_from(self, text: str, size: int) -> KeyHistory:
        """This history with the key named by ``text`` no longer trusted from tree size ``size``."""
        target = self.find(text)
        if not target.start <= size <= MAX_SIZE:
            first = target.start
            raise NoteError(f"the revocation point must be a tree size from {first} (the key's first size)")
        keys = tuple(replace(k, revoked=size) if k is target else k for k in self.keys)
        return KeyHistory(keys)

    def to_text(self) -> str:
        return HEADER + "\n" + "".join(key.to_line() + "\n" for key in self.keys)

    @classmethod
    def parse(cls, text: str) -> KeyHistory:
        """Parse the text form strictly; every error names the line and what is wrong."""
        keys: list[HistoryKey] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            words = line.split()
            where = f"key history line {number}"
            if len(words) < 4 or words[0] != "key" or words[2] != "from" or len(words) % 2:
                raise NoteError(f"{where} must be 'key <vkey> from <size> [until <size>] [revoked <size>]': {raw!r}")
            verifier = Verifier.from_text(words[1])
            fields: dict[str, int] = {}
            for name, value in zip(words[2::2], words[3::2], strict=True):
                if name not in ("from", "until", "revoked") or name in fields:
                    raise NoteError(f"{where}: unexpected or repeated word {name!r}")
                if not value.isdigit() or not 0 <= int(value) <= MAX_SIZE:
                    raise NoteError(f"{where}: {name} must be a tree size (0 to 2**63 - 1), got {value!r}")
                fields[name] = int(value)
            keys.append(HistoryKey(verifier, fields["from"], fields.get("until"), fields.get("revoked")))
        if not keys:
            raise NoteError("the key history names no key ('key <vkey> from <size>' lines)")
        names = {key.verifier.name for key in keys}
        if len(names) > 1:
            raise NoteError(f"the keys of one history must share the log's name; found {sorted(names)}")
        starts = [key.start for key in keys]
        if starts != sorted(starts) or len(set(starts)) != len(starts):
            raise NoteError(f"the keys' first sizes must increase line by line; found {starts}")
        return cls(tuple(keys))


Trust = Sequence[Verifier] | KeyHistory
"""What a verifier trusts: plain keys (valid at every size) or a key history."""


def trusted_verifiers(trust: Trust) -> list[Verifier]:
    return trust.verifiers if isinstance(trust, KeyHistory) else list(trust)


def open_trusted(note: str | bytes, trust: Trust) -> tuple[Checkpoint, list[NoteSignature]]:
    """Open a signed checkpoint against plain keys or a key history.

    With a history, only signatures by keys valid at the checkpoint's size count; a checkpoint
    with none raises :class:`OutOfRange` naming the keys and their ranges.
    """
    if not isinstance(trust, KeyHistory):
        return open_checkpoint(note, trust)
    checkpoint, signatures = open_checkpoint(note, trust.verifiers)
    by_id = {(k.verifier.name, k.verifier.key_id): k for k in trust.keys}
    valid = [s for s in signatures if by_id[(s.name, s.key_id)].valid_at(checkpoint.size)]
    if valid:
        return checkpoint, valid
    why = "; ".join(_range(by_id[(s.name, s.key_id)]) for s in signatures)
    raise OutOfRange(f"the checkpoint of size {checkpoint.size} is signed only by keys not valid at that size: {why}")


def unannounced(history: KeyHistory, entry_at: Callable[[int], bytes | None]) -> list[tuple[int, str]]:
    """Where the log disagrees with the history: each key after the first MUST be announced by a
    ``key.rotate`` entry at index ``start - 1`` naming it as the new key and its predecessor as the
    old one. Returns (index, sentence) for each key that is not (``entry_at`` reads stored bytes)."""
    found = []
    for old, new in itertools.pairwise(history.keys):
        index = new.start - 1
        body = entry_at(index)
        try:
            data = orjson.loads(body) if body is not None else None
        except orjson.JSONDecodeError:
            data = None
        meta = data.get("metadata") if isinstance(data, dict) and data.get("action") == ROTATE_ACTION else None
        wanted = {"old_key": old.verifier.to_text(), "new_key": new.verifier.to_text()}
        if not isinstance(meta, dict) or any(meta.get(k) != v for k, v in wanted.items()):
            found.append((index, (
                f"The key history says {new.verifier.name}+{new.verifier.key_id:08x} signs from size {new.start}, "
                f"but entry {index} is not the key.rotate entry handing the log to it: the key history or the "
                "log was altered."
            )))  # fmt: skip
    return found


def _range(key: HistoryKey) -> str:
    ident = f"{key.verifier.name}+{key.verifier.key_id:08x}"
    if key.revoked is not None and (key.until is None or key.revoked <= key.until):
        return f"{ident} is revoked from size {key.revoked}"
    if key.end is not None:
        return f"{ident} is valid for sizes {key.start}..{key.end - 1}"
    return f"{ident} is valid from size {key.start}"


__all__ = [
    "HEADER", "ROTATE_ACTION", "HistoryKey", "KeyHistory", "OutOfRange", "Trust", "open_trusted", "trusted_verifiers",
    "unannounced",
]  # fmt: skip
