"""Folders and files that only their owner may read: logs, keys, secrets, account tables.

Whatever the process's umask, a folder Graven creates for a log or a key is 0700 and a file it
creates is 0600, from the moment it exists (never created readable, then narrowed). SQLite gives
a database's ``-wal``, ``-shm`` and ``-journal`` files the mode of the database file itself, so a
database created here keeps all of them 0600. Existing folders and files are left as they are:
:func:`warnings_for` names those that others can read (``graven verify`` prints them).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def make_private_dir(path: Path) -> None:
    """Create ``path`` and each missing parent with mode 0700; folders that exist are not touched."""
    missing: list[Path] = []
    folder = path
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=FOLDER_MODE)
        except FileExistsError:
            continue  # made meanwhile by someone else: theirs
        os.chmod(folder, FOLDER_MODE)  # mkdir's mode passes through the umask; this does not


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty with mode 0600 unless it exists; True when this call created it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return True


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """``os.open(path, flags)`` creating the file (if ``flags`` say so) with mode 0600, not 0666 less the umask."""
    return os.open(path, flags, FILE_MODE)


def log_files(db: Path | None, signing_key: Path | None) -> list[Path]:
    """The files that hold a SQLite log and its keys: what only the owner should read. (Their folders
    are left out: a log may well live in a shared folder, and files of 0600 are closed in any.)"""
    paths: list[Path] = []
    if db is not None:
        paths += [db, *(db.with_name(db.name + suffix) for suffix in ("-wal", "-shm"))]
    if signing_key is not None:
        paths += [signing_key, signing_key.with_name("subject-keys.db")]
    return list(dict.fromkeys(paths))


def warnings_for(paths: Iterable[Path]) -> list[str]:
    """One line per path that others can read, saying how to close it (nothing is changed here)."""
    return [
        f"warning: {path} has mode {mode:04o}: other users of this machine can read it; chmod 600 {path}"
        for path, mode in loose(paths)
    ]


def loose(paths: Iterable[Path]) -> list[tuple[Path, int]]:
    """Those of ``paths`` that exist and that the group or others may read, write or enter, with their mode."""
    found = []
    for path in paths:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            found.append((path, mode))
    return found


def sync_dir(folder: Path) -> None:
    """fsync a folder, so that a rename or a new file inside it survives a crash."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
