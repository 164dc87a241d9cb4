"""Archiving and pruning a large SQLite log, beside plain copies of the same rows, in one run.

    .venv/bin/python bench/bench_archive.py                 # 1,000,000 entries (several minutes)
    .venv/bin/python bench/bench_archive.py --quick         # a smoke run with 5,000 entries (CI)
    .venv/bin/python bench/bench_archive.py --workdir DIR   # keep the files; reuse the built log

What is measured, each beside a baseline from the same run on the same machine:

- archive rate: ``graven.archive.archive`` of 90 % of the log (writing entries.jsonl, the tile
  files, the checkpoint and manifest, syncing, re-checking the written archive, recording it), beside
  a plain ``SELECT body`` of the same rows written to a JSON Lines file and synced; goal >= 100,000/s;
- prune rate: removing those bodies and target rows (one transaction), beside a plain ``DELETE`` of
  as many rows from a copy of the plain table;
- proof time of a kept entry after pruning 90 %, beside the same proofs before pruning (medians of
  warm calls at random kept indices): unchanged within noise;
- bytes per pruned entry after ``VACUUM``: what a pruned entry still costs (its leaf hash in the
  tiles), beside a full entry's bytes before; goal <= 80.

This is a benchmark, not a test: a MISS is reported, not raised; the exit status is non-zero only when
something is wrong (the log or the archive does not verify).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_log import (
    Row,
    big_log,
    bytes_on_disk,
    key_of,
    open_trail,
    print_table,
    say,
    verdict,
    workspace,
)

from graven.archive import archive, verify_archive
from graven.core import merkle
from graven.core.note import Verifier

ARCHIVE_GOAL = 100_000  # entries/s
BYTES_GOAL = 80  # per pruned entry
PROOFS = 300


def proof_times(db: Path, low: int, size: int, seed: int) -> list[float]:
    """Warm inclusion proofs (stored tiles to RFC 9162 path) of random entries in ``low .. size - 1``."""
    trail = open_trail(db)
    try:
        rng = random.Random(seed)
        times = []
        for _ in range(PROOFS):
            index = rng.randrange(low, size)
            start = time.perf_counter()
            _, hashes = trail.store.tree_hashes(merkle.inclusion_nodes(index, size))
            merkle.inclusion_proof(index, size, hashes)
            times.append(time.perf_counter() - start)
        return times
    finally:
        trail.close()


def plain_copy(db: Path, out: Path, below: int) -> float:
    """Seconds to write the first ``below`` bodies to a JSON Lines file and sync it (the floor)."""
    conn = sqlite3.connect(db)
    os.sync()  # nothing written before is charged to the timed copy
    start = time.perf_counter()
    with open(out, "wb") as handle:
        for (body,) in conn.execute("SELECT body FROM entries WHERE idx < ? ORDER BY idx", (below,)):
            handle.write(body.encode() + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    took = time.perf_counter() - start
    conn.close()
    return took


def plain_delete(plain: Path, below: int) -> float:
    """Seconds to DELETE ``below`` rows from a plain table (no index, no trigger) in one transaction."""
    conn = sqlite3.connect(plain, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    os.sync()
    start = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("DELETE FROM rows WHERE rowid <= ?", (below,))
    conn.execute("COMMIT")
    took = time.perf_counter() - start
    conn.close()
    return took


def make_plain(db: Path, plain: Path) -> None:
    """A plain one-column copy of the log's bodies (the baseline's table)."""
    plain.unlink(missing_ok=True)
    conn = sqlite3.connect(plain, isolation_level=None)
    conn.execute("CREATE TABLE rows (body TEXT NOT NULL)")
    conn.execute("ATTACH DATABASE ? AS log", (str(db),))
    conn.execute("INSERT INTO rows (body) SELECT body FROM log.entries ORDER BY idx")
    conn.execute("DETACH DATABASE log")
    conn.close()


def vacuum(db: Path) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("VACUUM")
    conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Archiving and pruning beside plain copies of the same rows.")
    parser.add_argument("--entries", type=int, help="size of the log (1,000,000; --quick: 5,000)")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run with a small log (CI)")
    parser.add_argument("--workdir", type=Path, help="keep files here and reuse the built log")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    size = args.entries or (5_000 if args.quick else 1_000_000)
    if size < 100:
        parser.error("--entries must be at least 100")
    with workspace(args.workdir) as workdir:
        return run(workdir, size, args.seed)


def run(workdir: Path, size: int, seed: int) -> int:
    started = time.perf_counter()
    built, how = big_log(workdir, size, seed)
    # Work on a copy: the built log stays reusable (and unpruned) for the next run.
    db = workdir / "archive-run.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copy(built, db)
    shutil.copy(key_of(built), key_of(db))
    checkpoint = key_of(built).with_name(key_of(built).name + ".checkpoint")
    if checkpoint.exists():
        shutil.copy(checkpoint, key_of(db).with_name(key_of(db).name + ".checkpoint"))
    below = size * 9 // 10
    say(f"log of {size:,} entries ({how}); archiving and pruning entries 0..{below - 1:,}")
    bytes_before = bytes_on_disk(db)

    say("  proofs before pruning ...")
    before = proof_times(db, below, size, seed)
    say("  plain copy and delete ...")
    plain_jsonl = workdir / "plain.jsonl"
    copy_s = plain_copy(db, plain_jsonl, below)
    plain_db = workdir / "plain.db"
    make_plain(db, plain_db)
    delete_s = plain_delete(plain_db, below)

    say("  graven archive ...")
    dest = workdir / "archive-0"
    shutil.rmtree(dest, ignore_errors=True)
    trail = open_trail(db)
    try:
        os.sync()  # the archive syncs its file system once: leave it nothing else to flush
        start = time.perf_counter()
        done = archive(trail, dest, below=below, prune=False)
        archive_s = time.perf_counter() - start
        os.sync()
        start = time.perf_counter()
        with trail.store.write() as tx:
            pruned = tx.prune(0, below)
        prune_s = time.perf_counter() - start
        verifier = Verifier.from_text(trail.verifier_key)
        report = trail.verify(archives=[dest])
    finally:
        trail.close()
    check = verify_archive(dest, [verifier])
    say("  proofs after pruning, VACUUM ...")
    after = proof_times(db, below, size, seed)
    vacuum(db)
    bytes_after = bytes_on_disk(db)
    kept = size - below
    per_entry_before = bytes_before / size
    per_pruned = (bytes_after - per_entry_before * kept) / below

    archive_rate, copy_rate = below / archive_s, below / copy_s
    prune_rate, delete_rate = pruned / prune_s, below / delete_s
    p_before, p_after = statistics.median(before), statistics.median(after)
    rows = [
        Row(f"archive, {below:,} entries", f"{archive_rate:,.0f} /s", f"{copy_rate:,.0f} /s",
            f"{archive_rate / copy_rate:.0%}", f">= {ARCHIVE_GOAL:,} /s", verdict(archive_rate >= ARCHIVE_GOAL)),
        Row(f"prune, {pruned:,} bodies", f"{prune_rate:,.0f} /s", f"{delete_rate:,.0f} /s",
            f"{prune_rate / delete_rate:.0%}", "(none)", ""),
        Row("proof of a kept entry, after/before", f"{p_after * 1000:.3f} ms", f"{p_before * 1000:.3f} ms",
            f"{p_after / p_before:.2f}x", "unchanged (<= 1.25x)", verdict(p_after <= 1.25 * p_before)),
        Row("bytes per pruned entry (VACUUM)", f"{per_pruned:,.0f} B", f"{per_entry_before:,.0f} B",
            f"{per_pruned / per_entry_before:.1%}", f"<= {BYTES_GOAL} B", verdict(per_pruned <= BYTES_GOAL)),
    ]  # fmt: skip
    print("Graven archive benchmark: archiving and pruning beside plain copies of the same rows, one run")
    print(f"  {size:,}-entry SQLite log, 90 % archived ({below:,}); {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print()
    print_table(rows)
    print()
    print("Baselines")
    print("  archive: SELECT body of the same rows written to one JSON Lines file and synced (no tiles,")
    print("           no checkpoint, no re-check)")
    print("  prune:   DELETE of as many rows from a plain one-column table in one transaction")
    print(f"  proofs:  the same {PROOFS} warm raw inclusion proofs before pruning")
    print("  bytes:   a whole entry before pruning (file size / entries)")
    print("Details")
    print(f"  file {bytes_before:,} bytes before, {bytes_after:,} after pruning and VACUUM; "
          f"archive folder {sum(p.stat().st_size for p in dest.rglob('*') if p.is_file()):,} bytes")  # fmt: skip
    print(
        f"  archive {archive_s:.2f} s, prune {prune_s:.2f} s, plain copy {copy_s:.2f} s, plain delete {delete_s:.2f} s"
    )
    print(f"  verify() after pruning: {report.message}")
    print(f"  the archive offline: {check.message}")
    print(f"  archived below {done.below:,} under the checkpoint of size {done.checkpoint_size:,}")
    print(f"  total time {time.perf_counter() - started:.0f} s")
    return 0 if report.ok and check.ok else 1


if __name__ == "__main__":
    sys.exit(main())
