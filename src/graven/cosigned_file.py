"""Durable small files: atomic replacement under a lock, and the cosigned checkpoints a log keeps.

:func:`replace_atomically` MUST leave either the old or the new content after a crash: it writes a
temporary file, fsyncs it, renames it over the target and fsyncs the directory. :func:`locked`
serialises writers of one file across threads and processes (an exclusive ``flock``).
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from graven.checkpoint_file import CheckpointFile
from graven.core.note import Checkpoint, NoteError, note_signatures
from graven.errors import ConfigError
from graven.private_files import FILE_MODE, make_private_dir, open_private

_counter = threading.Lock()
_serial = 0


def replace_atomically(path: Path, data: bytes, *, mode: int = FILE_MODE) -> None:
    """Replace ``path`` by ``data`` durably: temp file, fsync, rename, fsync of the directory."""
    global _serial
    with _counter:
        _serial += 1
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{_serial}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # whatever the umask
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` (threads and processes wait their turn)."""
    make_private_dir(path.parent)
    with os.fdopen(open_private(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def checkpoint_of(note: str) -> Checkpoint:
    """The checkpoint a signed note carries (signatures not checked)."""
    text, _ = note_signatures(note)
    return Checkpoint.parse(text)


class CosignedFile:
    """The newest checkpoint each witness cosigned, kept beside the log's signing key.

    One JSON object maps a witness URL to its cosigned note (the log's signature plus the witness's
    cosignature lines). An entry MUST only move forward: a note replaces the kept one for the same
    witness only when its tree is larger. Every update is atomic and serialised across processes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, str]:
        """Witness URL -> cosigned note; empty when nothing was kept yet."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ConfigError(f"cannot read cosigned checkpoints {self.path}: {exc.strerror}") from None
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            value = None
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ConfigError(f"{self.path} is not a JSON object of witness URL to cosigned checkpoint note")
        return value

    def get(self, url: str) -> str | None:
        """The note kept for one witness."""
        return self.read().get(url)

    def put(self, url: str, note: str) -> bool:
        """Keep ``note`` for ``url`` unless a note of an equal or larger tree is kept; True if kept."""
        size = checkpoint_of(note).size
        with locked(self.path):
            notes = self.read()
            current = notes.get(url)
            if current is not None and _size(current) >= size:
                return False
            notes[url] = note
            data = orjson.dumps(notes, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
            replace_atomically(self.path, data)
        return True


def _size(note: str) -> int:
    try:
        return checkpoint_of(note).size
    except NoteError:
        return -1


def beside(kept: CheckpointFile | None) -> CosignedFile | None:
    """Where a log keeps its cosigned checkpoints: beside its kept checkpoint, so beside its key.

    ``signing.key.checkpoint`` gives ``signing.key.cosigned``; None when the log keeps no copy.
    """
    if kept is None:
        return None
    name = kept.path.name.removesuffix(".checkpoint") + ".cosigned"
    return CosignedFile(kept.path.with_name(name))


def kept_notes(kept: CheckpointFile | None) -> list[str]:
    """Every cosigned checkpoint kept beside ``kept`` (empty when none)."""
    cosigned = beside(kept)
    return [] if cosigned is None else list(cosigned.read().values())
