"""A directory witness: the newest signed checkpoint, kept in a file the database operator does not control.

It MUST only move forward (a smaller checkpoint never replaces a larger one) and MUST be replaced
atomically (write, fsync, rename), so a crash leaves either the old or the new checkpoint. A write
that fails (a full disk) MUST leave no temporary file behind and raises ``OSError``; the trail's
signer reports that and retries (see :mod:`graven.signing`).
"""

from __future__ import annotations

import fcntl
import os
import threading
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
        """Keep ``note`` if it is newer than the kept one (safe across processes: a file lock).

        Raises ``OSError`` when it cannot be written; the temporary file is removed then.
        """
        make_private_dir(self.path.parent)
        with os.fdopen(
            open_private(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT), "a"
        ) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.read()
            if current is not None and _size(current) >= _size(note):
                return
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            try:
                with os.fdopen(open_private(tmp), "w") as handle:
                    handle.write(note)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                tmp.unlink(missing_ok=True)  # a full disk must not also leave half-written files behind
                raise
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def kept_size(note: str | None) -> int:
    """The tree size of a kept checkpoint note; -1 for none (or one that cannot be read)."""
    return -1 if note is None else _size(note)


def _size(note: str) -> int:
    try:
        text, _ = note_signatures(note)
        return Checkpoint.parse(text).size
    except NoteError:
        return -1
