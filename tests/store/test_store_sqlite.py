"""The SQLite backend passes the Store contract, plus file-specific behaviour."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from graven.errors import ConfigError
from graven.store import Store, open_store, sqlite_path
from graven.store.sqlite import SQLiteStore, translate_error
from graven.testing.store_contract import StoreContract


class TestSQLiteStore(StoreContract):
    """The shared contract, on a real SQLite file."""

    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path: Path) -> None:
        self.folder = tmp_path

    def make_store(self) -> Store:
        return SQLiteStore(self.folder / "log.db", create=True)

    def raw_execute(self, store: Store, sql: str) -> None:
        assert isinstance(store, SQLiteStore)
        conn = sqlite3.connect(store.path, isolation_level=None)
        try:
            conn.execute(sql)
        except sqlite3.DatabaseError as exc:
            raise translate_error(exc, store.path) from exc
        finally:
            conn.close()


class TestURLs:
    """Log URLs and paths name the right file or fail clearly."""

    @pytest.mark.parametrize(
        ("url", "expected"),
        [("a/b.db", "a/b.db"), ("sqlite:///rel.db", "rel.db"), ("sqlite:////abs/x.db", "/abs/x.db")],
    )
    def test_sqlite_paths(self, url: str, expected: str) -> None:
        """Plain paths and both sqlite:/// forms resolve to the file they name."""
        assert Path(expected) == sqlite_path(url)

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("sqlite://host/x.db", "malformed SQLite URL"),
            ("mysql://x/y", "unsupported log URL scheme 'mysql'"),
            ("", "empty log path"),
        ],
    )
    def test_bad_urls(self, url: str, message: str) -> None:
        """A malformed or unsupported URL is refused with a message saying what to use."""
        with pytest.raises(ConfigError, match=message):
            open_store(url)

    def test_missing_folder(self, tmp_path: Path) -> None:
        """A log in a folder that does not exist is refused, naming the folder."""
        with pytest.raises(ConfigError, match="does not exist"):
            open_store(tmp_path / "nope" / "x.db")

    def test_not_a_log(self, tmp_path: Path) -> None:
        """Opening a SQLite file that is not a Graven log says how to create one."""
        path = tmp_path / "other.db"
        sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
        with pytest.raises(ConfigError, match="graven init"):
            open_store(path).settings()

    def test_not_sqlite(self, tmp_path: Path) -> None:
        """A file that is not a database at all is named as such."""
        path = tmp_path / "junk.db"
        path.write_bytes(b"this is not a database, just text" * 100)
        with pytest.raises(ConfigError, match="not a SQLite database"):
            open_store(path).settings()

    def test_wal_and_full_sync(self, tmp_path: Path) -> None:
        """The store runs in WAL mode with synchronous=FULL (durable commits)."""
        store = SQLiteStore(tmp_path / "x.db", create=True)
        store.initialize({"origin": "o"})
        conn = store._reader()
        assert "wal" == conn.execute("PRAGMA journal_mode").fetchone()[0]
        assert 2 == conn.execute("PRAGMA synchronous").fetchone()[0]
        store.close()
