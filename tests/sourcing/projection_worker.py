"""A projection runner in its own process (the kill -9 test starts it and kills it mid-run)."""

from __future__ import annotations

import sys
import time

import graven
from graven.core.model import Entry
from graven.sourcing import AppDB, Projection, Projector


def count_entry(entry: Entry, db: AppDB) -> None:
    db.execute("INSERT INTO seen (idx, action) VALUES (?, ?)", (entry.index, entry.action))
    time.sleep(0.0005)


def reset(db: AppDB) -> None:
    db.execute("DELETE FROM seen")


def projection() -> Projection:
    return Projection("seen", count_entry, reset)


def main(url: str, key: str, app_db: str) -> None:
    with graven.open(url, signing_key=key, create=False) as trail:
        projector = Projector(trail, app_db, [projection()])
        projector.db.execute("CREATE TABLE IF NOT EXISTS seen (idx BIGINT NOT NULL, action TEXT NOT NULL)")
        print("ready", flush=True)
        projector.run()


if __name__ == "__main__":
    main(*sys.argv[1:4])
