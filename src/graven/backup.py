"""Backups of a log and restoring them, without ever signing a fork.

``backup(trail, dest)`` writes an online, consistent copy into the new folder ``dest``: the
database (SQLite: the ``sqlite3`` backup API in one step, a single read snapshot, while writers go
on; PostgreSQL: every log table copied in one REPEATABLE READ snapshot), the checkpoint kept beside
the signing key, and ``manifest.json`` naming the copy's size, root, origin and creation time.

``restore(...)`` puts a backup in place of the live log. Writers of the log MUST be stopped first
(a writer still running refuses to append to the restored log while it is smaller than the kept
checkpoint, and must be restarted after a restore that accepted a loss). It refuses:

- a backup that does not verify, or that belongs to another log (origin, key);
- a backup inconsistent with the kept (or witnessed) checkpoint: another history;
- a backup older than the kept checkpoint (or smaller than the live log), unless ``accept_loss``.

With ``accept_loss`` the loss is recorded as the first entry after the restored ones (``log.restore``,
naming the lost range, the superseded checkpoint, its origin, size and root, and its signed note),
a checkpoint covering that entry is signed at once, and a new lineage starts: the kept checkpoint
and the witnesses' cosigned ones of the old lineage are archived beside the key as
``<name>.lineage-N`` and the kept copy is replaced by the new checkpoint. ``graven verify`` follows
the lineage: checkpoints of the old one are accepted up to the superseded size and the loss is
reported. The origin stays the same, so witnesses that cosigned the old lineage refuse the new,
smaller tree until their operators, having seen the ``log.restore`` entry, drop their state for it.

PostgreSQL: a backup is restored into a schema that does not exist yet (the log's tables refuse
every UPDATE, DELETE and TRUNCATE, so nothing is overwritten in place); move the damaged schema
aside first (``ALTER SCHEMA graven RENAME TO graven_damaged``).
"""

from __future__ import annotations

import base64
import os
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from graven.checkpoint_file import CheckpointFile
from graven.core import merkle
from graven.core.audit import RESTORE_ACTION
from graven.core.note import NoteError, Signer, Verifier, open_checkpoint
from graven.cosigned_file import replace_atomically
from graven.errors import ConfigError, IntegrityError, StoreError
from graven.lineage import KeptCheckpoints, archived, cosigned_path, next_lineage
from graven.sequencer import KeptCheckpoint
from graven.store import Store, open_store, sqlite_path
from graven.trail import Trail

FORMAT = "graven-backup/1"
MANIFEST = "manifest.json"
SQLITE_FILE = "trail.db"
KEPT_FILE = "checkpoint"
SETTINGS_FILE = "settings.json"


@dataclass(frozen=True)
class Manifest:
    """What a backup holds: the copy's tree (size and root), the log's origin and key, and when."""

    backend: str
    origin: str
    verifier_key: str
    size: int
    root: bytes
    created_at: str
    kept_checkpoint: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "backend": self.backend, "origin": self.origin, "verifier_key": self.verifier_key,
            "size": self.size, "root": base64.b64encode(self.root).decode(), "created_at": self.created_at,
            "kept_checkpoint": KEPT_FILE if self.kept_checkpoint else None,
        }  # fmt: skip

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        try:
            data = orjson.loads(path.read_bytes())
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError(f"not a {FORMAT} manifest")
            return cls(
                str(data["backend"]), str(data["origin"]), str(data["verifier_key"]), int(data["size"]),
                base64.b64decode(data["root"], validate=True), str(data["created_at"]),
                data.get("kept_checkpoint") is not None,
            )  # fmt: skip
        except FileNotFoundError:
            raise ConfigError(f"{folder} is not a Graven backup: it has no {MANIFEST}") from None
        except (OSError, ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
            raise ConfigError(f"{path} is not a readable Graven backup manifest ({exc})") from None


@dataclass(frozen=True)
class Restored:
    """The outcome of a restore: the size restored, the entries lost (empty range: none) and the
    index of the ``log.restore`` entry."""

    size: int
    lost_from: int
    lost_to: int
    entry: int
    lineage: int | None


# --- backup ---------------------------------------------------------------------------------------


def backup(trail: Trail, dest: Path) -> Manifest:
    """Write a consistent copy of the open log into the new folder ``dest`` (see the module doc)."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConfigError(f"backup destination {dest} exists and is not an empty folder")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if trail.store.url.startswith("sqlite://"):
            backend = "sqlite"
            _copy_sqlite(sqlite_path(trail.store.url), dest / SQLITE_FILE)
            copy = open_store(dest / SQLITE_FILE)
            try:
                size, root = tree_head(copy)
                settings = copy.settings()
            finally:
                copy.close()
        else:
            from graven.store.pg_backup import dump

            backend = "postgresql"
            size, root, settings = dump(trail.store, dest)
            _write(dest / SETTINGS_FILE, orjson.dumps(settings, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        kept = trail.witness.read() if trail.witness is not None else None
        if kept is not None:
            _write(dest / KEPT_FILE, kept.encode())
        manifest = Manifest(backend, settings["origin"], settings.get("verifier_key", ""), size, root,
                            _now(), kept is not None)  # fmt: skip
        _write(dest / MANIFEST, orjson.dumps(manifest.to_json(), option=orjson.OPT_INDENT_2) + b"\n")
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)  # nothing half-written is left looking like a backup
        raise
    return manifest


def _copy_sqlite(source: Path, target: Path) -> None:
    """SQLite's online backup in one step: one read snapshot of the source while writers go on."""
    src = sqlite3.connect(source, timeout=60)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode = DELETE")  # a single self-contained file
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot copy {source} to {target}: {exc}") from exc
    finally:
        dst.close()
        src.close()
    _fsync(target)


def tree_head(store: Store) -> tuple[int, bytes]:
    """The size and root of a store's tree, read in one snapshot."""
    size, _ = store.tree_hashes([])
    nodes = merkle.root_nodes(size)
    checked, hashes = store.tree_hashes(nodes)
    if checked != size or len(hashes) != len(nodes):
        raise IntegrityError(f"the tree of size {size} is missing stored hashes; run `graven verify`")
    return size, merkle.root_from(size, hashes)


# --- restore --------------------------------------------------------------------------------------


def restore(
    db: str | Path,
    folder: Path,
    signing_key: Path,
    *,
    accept_loss: bool = False,
    reason: str | None = None,
    actor: dict[str, Any] | None = None,
) -> Restored:
    """Put the backup in ``folder`` in place of the log at ``db`` (see the module doc)."""
    from graven.keys import load_signing_key

    manifest = Manifest.read(folder)
    signer = load_signing_key(signing_key)
    verifier = signer.verifier()
    if manifest.verifier_key != verifier.to_text():
        raise ConfigError(f"the backup in {folder} is not of this log: it was signed by another key ({signing_key})")
    postgres = str(db).startswith(("postgresql://", "postgres://"))
    if manifest.backend != ("postgresql" if postgres else "sqlite"):
        raise ConfigError(
            f"the backup in {folder} is a {manifest.backend} backup; restore it into a {manifest.backend} log"
        )
    kept_path = signing_key.with_name(signing_key.name + ".checkpoint")
    anchor = KeptCheckpoints(kept_path, verifier)()
    live = None if postgres else _live_size(db)  # a PostgreSQL backup goes into a new schema
    staged = _stage(db, folder, manifest)
    try:
        try:
            size, root = tree_head(staged)
            if (size, root) != (manifest.size, manifest.root):
                raise IntegrityError(
                    f"the backup in {folder} does not hold the tree its manifest names; it was altered"
                )
            report = Trail(staged, redaction=None).verify(verifier)
            if not report.ok:
                raise IntegrityError(f"the backup in {folder} fails verification: {report.message}")
            _check_consistent(staged, size, anchor, folder)
        finally:
            staged.close()
        kept_size = anchor.checkpoint.size if anchor is not None else 0
        lost_to = max(kept_size, live or 0)
        if lost_to > size and not accept_loss:
            raise IntegrityError(
                f"refusing to restore: the backup holds {size} entries but {_newer(anchor, live, size)}; restoring "
                f"it would lose entries {size}..{lost_to - 1}. Restore a newer backup, or accept the loss with "
                f"`graven restore {folder} --accept-loss`"
            )
    except BaseException:
        if postgres:
            from graven.store.pg_backup import drop

            drop(str(db))  # the schema was created by this restore: nothing is left of it
        raise
    if not postgres:
        _put_in_place(db, folder)
    return _record_restore(db, signer, kept_path, manifest, folder, anchor, lost_to, reason, actor)


def _live_size(db: str | Path) -> int | None:
    """The live log's size, when it can be opened at all (a damaged one may not)."""
    try:
        store = open_store(db)
    except Exception:
        return None
    try:
        return store.size()
    except Exception:
        return None
    finally:
        store.close()


def _stage(db: str | Path, folder: Path, manifest: Manifest) -> Store:
    """The backup opened as a store, to be checked before it replaces anything."""
    if manifest.backend == "sqlite":
        return open_store(folder / SQLITE_FILE)
    from graven.store.pg_backup import load

    try:
        settings = orjson.loads((folder / SETTINGS_FILE).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {folder / SETTINGS_FILE}: {exc}") from None
    return load(str(db), folder, {str(k): str(v) for k, v in settings.items()})


def _check_consistent(staged: Store, size: int, anchor: KeptCheckpoint | None, folder: Path) -> None:
    """Refuse a backup whose tree disagrees with the kept checkpoint (another history, not an older copy)."""
    if anchor is None:
        return
    cp = anchor.checkpoint
    if cp.size == 0 or cp.size > size:
        return  # an older copy: its prefix cannot be checked against the larger kept tree
    _, hashes = staged.tree_hashes(merkle.root_nodes(cp.size))
    same = merkle.root_from(cp.size, hashes) == cp.root_hash
    if not same:
        raise IntegrityError(
            f"refusing to restore: the backup in {folder} is not consistent with the {anchor.where} "
            f"(size {cp.size}): it holds another history (a fork)"
        )


def _newer(anchor: KeptCheckpoint | None, live: int | None, size: int) -> str:
    said = []
    if anchor is not None and anchor.checkpoint.size > size:
        said.append(f"the {anchor.where} was signed at size {anchor.checkpoint.size}")
    if live is not None and live > size:
        said.append(f"the live log has {live} entries")
    return " and ".join(said)


def _put_in_place(db: str | Path, folder: Path) -> None:
    """SQLite: the backup copied over the live file with the backup API, under SQLite's locks."""
    target = sqlite_path(str(db))
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(folder / SQLITE_FILE)
    dst = sqlite3.connect(target, timeout=60)
    try:
        dst.execute("PRAGMA synchronous = FULL")
        src.backup(dst)  # page by page under SQLite's own locks, WAL included: never a torn file
        dst.execute("PRAGMA journal_mode = WAL")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot restore {folder} into {target}: {exc}") from exc
    finally:
        dst.close()
        src.close()


def _record_restore(
    db: str | Path,
    signer: Signer,
    kept_path: Path,
    manifest: Manifest,
    folder: Path,
    anchor: KeptCheckpoint | None,
    lost_to: int,
    reason: str | None,
    actor: dict[str, Any] | None,
) -> Restored:
    """The ``log.restore`` entry, a checkpoint covering it, and (after a loss) the new lineage.

    After a loss the entry is appended without holding the log to the kept checkpoint (the entry
    is what supersedes it); the kept files are archived and replaced only after that commit, so a
    crash in between leaves writers refusing, and running the restore again finishes it.
    """
    size = manifest.size
    loss = lost_to > size
    # A new lineage only when a kept checkpoint is lost; entries never checkpointed are just recorded.
    superseding = loss and anchor is not None and anchor.checkpoint.size > size
    lineage = next_lineage(kept_path) if superseding else None
    metadata: dict[str, Any] = {
        "backup": {"size": size, "root": base64.b64encode(manifest.root).decode(), "created_at": manifest.created_at},
    }
    if loss:
        metadata["lost"] = {"from": size, "to": lost_to}
        if superseding and anchor is not None:
            metadata["lineage"] = lineage
            cp = anchor.checkpoint
            metadata["superseded"] = {
                "origin": cp.origin, "size": cp.size, "root": base64.b64encode(cp.root_hash).decode(),
                "note": _note_of(anchor, kept_path, signer.verifier()),
            }  # fmt: skip
    event = {
        "action": RESTORE_ACTION, "actor": actor or {"type": "system", "id": "graven"}, "outcome": "success",
        "source": "cli", "targets": [{"type": "log", "id": manifest.origin}], "metadata": metadata,
        "reason": reason or (f"restored from the backup {folder.name} of {manifest.created_at}"
                             + (f", accepting the loss of entries {size}..{lost_to - 1}" if loss else "")),
    }  # fmt: skip
    store = open_store(db)
    # Held to the kept checkpoint unless this entry is the one that supersedes it.
    witness = None if superseding else CheckpointFile(kept_path)
    trail = Trail(store, signer=signer, witness=witness, redaction=None)
    try:
        index = trail.record(event)
        note = trail.checkpoint()
    finally:
        trail.close()
    if superseding:
        _start_lineage(kept_path, note, lineage or 1)
    return Restored(size, size, lost_to if loss else size, index, lineage)


def _note_of(anchor: KeptCheckpoint, kept_path: Path, verifier: Verifier) -> str:
    """The signed note of the superseded checkpoint, from the file that keeps it."""
    candidates = [CheckpointFile(kept_path).read()]
    from graven.cosigned_file import CosignedFile

    candidates += CosignedFile(cosigned_path(kept_path)).read().values()
    for note in candidates:
        if note is None:
            continue
        try:
            checkpoint, _ = open_checkpoint(note, [verifier])
        except NoteError:
            continue
        if checkpoint == anchor.checkpoint:
            return note
    raise ConfigError(f"the {anchor.where} changed while restoring; run the restore again")


def _start_lineage(kept_path: Path, note: str, lineage: int) -> None:
    """Archive the old lineage's kept files beside the key, then keep the new checkpoint."""
    cosigned = cosigned_path(kept_path)
    for path in (kept_path, cosigned):
        if path.exists() and not any(p.name == f"{path.name}.lineage-{lineage}" for p in archived(path)):
            replace_atomically(path.with_name(f"{path.name}.lineage-{lineage}"), path.read_bytes())
    cosigned.unlink(missing_ok=True)
    replace_atomically(kept_path, note.encode())


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


__all__ = ["Manifest", "Restored", "backup", "restore", "tree_head"]
