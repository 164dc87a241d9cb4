"""The baseline of bench_http.py: the least an ingest endpoint can do and still be honest.

A FastAPI app served by uvicorn like ``graven serve``: it checks the same kind of bearer key
(``graven_<id>_<secret>``, its HMAC-SHA256 under a server secret compared in constant time), parses
the JSON body, and inserts each event's JSON into one TEXT column of a plain SQLite table (WAL,
``synchronous=FULL``, one transaction per request, written from a worker thread as ``graven serve``
writes), answering 201 with the new rows' positions.
No validation, no Merkle tree, no signing, no audit of the request: the floor for the same work
over the same socket. Configured by environment variables PLAIN_DB, PLAIN_SECRET, PLAIN_KEY_ID and
PLAIN_KEY_HASH (set by bench_http.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import sqlite3
import threading

import orjson
from fastapi import FastAPI, HTTPException, Request, Response

_KEY_PREFIX = "Bearer graven_"


def key_hash(secret: bytes, key: str) -> str:
    """How the baseline stores a key: HMAC-SHA256 of its text under the server secret."""
    return hmac.new(secret, f"apikey\n{key}".encode(), hashlib.sha256).hexdigest()


def create_app() -> FastAPI:
    db, secret = os.environ["PLAIN_DB"], os.environ["PLAIN_SECRET"].encode()
    keys = {os.environ["PLAIN_KEY_ID"]: os.environ["PLAIN_KEY_HASH"]}
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS events (body TEXT NOT NULL)")
    lock = threading.Lock()
    app = FastAPI()

    def insert(rows: list[tuple[str]]) -> int:
        with lock:
            conn.execute("BEGIN IMMEDIATE")
            first: int = conn.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()[0]  # O(log n)
            conn.executemany("INSERT INTO events (body) VALUES (?)", rows)
            conn.execute("COMMIT")
        return first

    @app.post("/api/v1/events", status_code=201)
    async def ingest(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        key_id = header[len(_KEY_PREFIX) : len(_KEY_PREFIX) + 12] if header.startswith(_KEY_PREFIX) else ""
        known = keys.get(key_id)
        if known is None or not hmac.compare_digest(known, key_hash(secret, header[len("Bearer ") :])):
            raise HTTPException(401, "bad key")
        body = orjson.loads(await request.body())
        events = body if isinstance(body, list) else [body]
        rows = [(orjson.dumps(event).decode(),) for event in events]
        first = await asyncio.to_thread(insert, rows)  # the write off the event loop, as graven serve does
        content = orjson.dumps({"indices": list(range(first, first + len(rows)))})
        return Response(content, status_code=201, media_type="application/json")

    return app
