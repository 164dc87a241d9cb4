"""The checkpoints a log keeps outside its database, and the lineages a restore starts.

A writer holds the log to the newest checkpoint kept beside the signing key: the kept copy
(``signing.key.checkpoint``) and the witnesses' cosigned ones (``signing.key.cosigned``). A database
rolled back to an older copy cannot roll these back with it, so :class:`KeptCheckpoints` is what
the sequencer checks before appending or signing. It re-reads the files only when their size,
modification time or inode changed, so holding a writer to them costs a few ``stat`` calls per
checkpoint signed, not a read per append.

A restore that accepts a loss (``graven restore --accept-loss``) starts a new lineage: the kept
files of the old one are archived beside them as ``<name>.lineage-N`` (never deleted), and the log
records a ``log.restore`` entry naming the superseded checkpoint and the lost range, which
``graven verify`` follows (see :mod:`graven.core.audit`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from graven.checkpoint_file import CheckpointFile
from graven.core.note import NoteError, Verifier, open_checkpoint
from graven.cosigned_file import CosignedFile
from graven.errors import GravenError
from graven.sequencer import KeptCheckpoint

_Stamp = tuple[int, int, int] | None


def _stamp(path: Path) -> _Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None  # absent or unreachable: read as nothing kept (signing reports why it cannot keep)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def cosigned_path(kept: Path) -> Path:
    """``signing.key.checkpoint`` -> ``signing.key.cosigned`` (where witnesses' cosignatures are kept)."""
    return kept.with_name(kept.name.removesuffix(".checkpoint") + ".cosigned")


class KeptCheckpoints:
    """The newest checkpoint kept beside the key (the kept copy or a witness's cosigned one) that
    ``verifier`` signed; callable, as the sequencer's ``kept`` hook."""

    def __init__(self, kept: Path, verifier: Verifier) -> None:
        self.kept = kept
        self.cosigned = cosigned_path(kept)
        self.verifier = verifier
        self._stamps: tuple[_Stamp, _Stamp] | None = None
        self._newest: KeptCheckpoint | None = None

    def __call__(self) -> KeptCheckpoint | None:
        stamps = (_stamp(self.kept), _stamp(self.cosigned))
        if stamps != self._stamps:
            self._newest = self._read()
            self._stamps = stamps
        return self._newest

    def _read(self) -> KeptCheckpoint | None:
        notes: list[tuple[str, str]] = []
        try:
            note = CheckpointFile(self.kept).read()
        except GravenError:
            note = None  # unreadable: the background signer reports the kept file's trouble
        if note is not None:
            notes.append((note, f"kept checkpoint ({self.kept})"))
        try:
            cosigned_notes = CosignedFile(self.cosigned).read()
        except GravenError:
            cosigned_notes = {}
        for url, cosigned in cosigned_notes.items():
            notes.append((cosigned, f"checkpoint cosigned by the witness {url} (kept in {self.cosigned})"))
        newest: KeptCheckpoint | None = None
        for text, where in notes:
            try:
                checkpoint, _ = open_checkpoint(text, [self.verifier])
            except NoteError:
                continue  # not signed by this log's key: it says nothing about this log
            if newest is None or checkpoint.size > newest.checkpoint.size:
                newest = KeptCheckpoint(checkpoint, where)
        return newest


_ARCHIVE = re.compile(r"\.lineage-(\d+)$")


def archived(path: Path) -> list[Path]:
    """The archived copies of ``path`` from earlier lineages (``path.lineage-1``, ...), oldest first."""
    if not path.parent.is_dir():
        return []
    found = []
    for other in path.parent.iterdir():
        if other.name.startswith(path.name + ".lineage-") and (m := _ARCHIVE.search(other.name)):
            found.append((int(m.group(1)), other))
    return [p for _, p in sorted(found)]


def next_lineage(kept: Path) -> int:
    """The number the next archived lineage of ``kept`` gets (1 for the first restore)."""
    numbers = [int(m.group(1)) for p in archived(kept) if (m := _ARCHIVE.search(p.name))]
    return max(numbers, default=0) + 1


def archived_notes(kept: Path) -> list[str]:
    """Every checkpoint note kept by earlier lineages (the kept copies and the cosigned ones)."""
    notes: list[str] = []
    for path in archived(kept):
        note = CheckpointFile(path).read()
        if note:
            notes.append(note)
    for path in archived(cosigned_path(kept)):
        notes += CosignedFile(path).read().values()
    return notes
