"""The key store of crypto-shredding: one AES-256 key per data subject, kept apart from the entries.

A small SQLite file (default ``.graven/subject-keys.db``, or ``GRAVEN_SUBJECT_KEYS``), never the
log's own database, so that whoever copies or backs up the log does not copy the keys with it.

Guarantees:

- MUST commit a new key durably (``synchronous=FULL``) before any value sealed with it is recorded.
- MUST overwrite a destroyed key's bytes in the file (``secure_delete``) and leave no copy in a
  write-ahead log (rollback journal, truncated at commit). Copies in backups of this file, or blocks
  the filesystem or disk kept elsewhere, are outside its reach: back this file up separately and
  for a shorter time than the log, or keep it on storage you can wipe.
- A destroyed subject is remembered (when and why), and a later write for the same subject gets a
  new key: values sealed before stay unreadable.
- Safe to share between threads; several processes may use one file (SQLite locking).
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from graven.core.shredding import SubjectKey
from graven.errors import ConfigError, ValidationError
from graven.keys import DEFAULT_DIR
from graven.private_files import create_private_file, make_private_dir

DEFAULT_SUBJECT_KEYS = DEFAULT_DIR / "subject-keys.db"
MAX_SUBJECT = 400

_SCHEMA = """
CREATE TABLE IF NOT EXISTS subject_keys (
    subject TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key BLOB NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (subject, key_id)
);
CREATE TABLE IF NOT EXISTS forgotten (
    subject TEXT NOT NULL,
    key_count INTEGER NOT NULL,
    forgotten_at TEXT NOT NULL
);
"""


def check_subject(subject: str) -> str:
    """A data subject is ``type:id``; anything else is refused with the rule named."""
    if not isinstance(subject, str) or len(subject) > MAX_SUBJECT:
        raise ValidationError("subject", f"must be type:id text of at most {MAX_SUBJECT} characters", subject)
    kind, sep, ident = subject.partition(":")
    if not sep or not kind.strip() or not ident.strip():
        raise ValidationError("subject", "must be type:id, such as customer:c-1042", subject)
    return subject


class SubjectKeys:
    """Per-subject keys: created on first use, destroyed by :meth:`destroy`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            make_private_dir(self.path.parent)
            create_private_file(self.path)  # 0600 before SQLite opens it (its journal copies the mode)
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._conn.execute("PRAGMA journal_mode=TRUNCATE")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA secure_delete=ON")
            self._conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the subject key store {self.path}: {exc}") from None
        self._lock = threading.Lock()

    def key_for(self, subject: str) -> SubjectKey:
        """The subject's current key, created (and committed) when it has none."""
        check_subject(subject)
        with self._lock:
            row = self._conn.execute(
                "SELECT key_id, key FROM subject_keys WHERE subject = ? ORDER BY created_at DESC LIMIT 1", (subject,)
            ).fetchone()
            if row is not None:
                return SubjectKey(row[0], bytes(row[1]))
            key = SubjectKey(secrets.token_hex(4), secrets.token_bytes(32))
            self._conn.execute(
                "INSERT INTO subject_keys (subject, key_id, key, created_at) VALUES (?, ?, ?, ?)",
                (subject, key.key_id, key.key, datetime.now(UTC).isoformat()),
            )
            return key

    def lookup(self, subject: str, key_id: str) -> bytes | None:
        """One key's bytes, or None once destroyed."""
        with self._lock:
            row = self._conn.execute(
                "SELECT key FROM subject_keys WHERE subject = ? AND key_id = ?", (subject, key_id)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def destroy(self, subject: str) -> int:
        """Destroy every key of ``subject`` (durably); returns how many there were."""
        check_subject(subject)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                count = self._conn.execute("DELETE FROM subject_keys WHERE subject = ?", (subject,)).rowcount
                self._conn.execute(
                    "INSERT INTO forgotten (subject, key_count, forgotten_at) VALUES (?, ?, ?)",
                    (subject, count, datetime.now(UTC).isoformat()),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return int(count)

    def is_forgotten(self, subject: str) -> bool:
        with self._lock:
            return self._conn.execute("SELECT 1 FROM forgotten WHERE subject = ?", (subject,)).fetchone() is not None

    def close(self) -> None:
        with self._lock:
            self._conn.close()
