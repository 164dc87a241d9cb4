"""A backup keeps the stream index: a restored PostgreSQL log still reads its streams and verifies."""

from __future__ import annotations

from pathlib import Path

import graven
from graven.backup import backup, restore
from graven.sourcing import EventStore, NewEvent
from tests.pgserver import Server

ACTOR = {"type": "user", "id": "u-1"}


def test_postgresql_backup_and_restore_keep_streams(pg: Server, tmp_path: Path) -> None:
    """The stream_versions table is copied and loaded with the log tables."""
    url, key = pg.schema_url("bk"), tmp_path / "signing.key"
    with graven.init(url, signing_key=key) as trail:
        EventStore(trail).append("account:a", [NewEvent("Opened", entry={"actor": ACTOR})] * 3, expected_version=0)
        backup(trail, tmp_path / "bk")
    target = pg.schema_url("restored")
    restore(target, tmp_path / "bk", key)
    with graven.open(target, signing_key=key, create=False) as restored:
        store = EventStore(restored)
        assert [1, 2, 3] == [e.version for e in store.read("account:a")]
        assert restored.verify().ok
