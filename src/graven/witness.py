"""A directory witness: the newest signed checkpoint, kept in a file the database operator does not control.

It MUST only move forward (a smaller checkpoint never replaces a larger one) and MUST be replaced
atomically (write, fsync, rename), so a crash leaves either the old or the new checkpoint.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from graven.core.note import Checkpoint, NoteError, note_signatures
from graven.errors import ConfigError
from graven.private_files import make_private_dir, open_private


class CheckpointFile:
    """Keeps the newest checkpoint note pushed to it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> str | None:
        """The kept note, or None when nothing was kept yet."""
        try:
            return self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"cannot read witnessed checkpoint {self.path}: {exc.strerror}") from None

    def push(self, note: str) -> None:
        """Keep ``note`` if it is newer than the kept one (safe across processes: a file lock)."""
        make_private_dir(self.path.parent)
        with os.fdopen(
            open_private(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT), "a"
        ) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.read()
            if current is not None and _size(current) >= _size(note):
                return
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            with os.fdopen(open_private(tmp), "w") as handle:
                handle.write(note)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def _size(note: str) -> int:
    try:
        text, _ = note_signatures(note)
        return Checkpoint.parse(text).size
    except NoteError:
        return -1
