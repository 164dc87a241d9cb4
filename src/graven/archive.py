"""Archives of sealed ranges, pruning that keeps every proof, and retention rules.

An archive is a folder that checks offline with the log's public key alone:

- ``entries.jsonl``: the stored bytes (the Merkle leaf, RFC 8785 JSON) of entries ``first .. below - 1``,
  one per line, in index order; sealed personal values stay sealed, so forgotten subjects stay
  forgotten;
- ``tile/<L>/<N>[.p/<W>]``: the Merkle tree of the first ``below`` leaves as C2SP ``tlog-tiles``;
- ``checkpoint``: the smallest signed checkpoint covering the range (size ``S >= below``);
- ``manifest.json``: origin, range, ``S`` and the consistency proof from ``below`` to ``S``.

Archiving MUST refuse a range no signed checkpoint covers, and MUST write, sync and re-check the
archive before anything is pruned. The archiving is recorded as a ``log.archive`` entry before the
bodies are removed; verification accepts missing entries only below a boundary that such an entry
vouches for, taking their leaf hashes from the tiles, which are never pruned. Entries of the log's
own actions (``log.*``) are never pruned by retention. A pruned entry's event id no longer guards
against a repeat: the same id recorded again after pruning is a new entry.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import os
import shutil
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from graven.core import audit, merkle
from graven.core.note import NoteError, Verifier, open_checkpoint
from graven.errors import ConfigError, IntegrityError
from graven.private_files import sync_dir
from graven.store import Store

if TYPE_CHECKING:
    from graven.trail import Trail

ARCHIVE_ACTION = "log.archive"
FORMAT = "graven-archive/1"
_SYSTEM = {"type": "system", "id": "graven"}


# --- tile paths (C2SP tlog-tiles) -----------------------------------------------------------------


def tile_path(level: int, index: int, width: int) -> str:
    """The C2SP path of a tile: ``tile/0/x001/x234/067``, partial ones ending ``.p/<width>``."""
    digits = f"{index:03d}"
    digits = "0" * (-len(digits) % 3) + digits
    parts = [digits[k : k + 3] for k in range(0, len(digits), 3)]
    name = "/".join([*(f"x{p}" for p in parts[:-1]), parts[-1]])
    return f"tile/{level}/{name}" + ("" if width == merkle.TILE_WIDTH else f".p/{width}")


def tile_widths(size: int) -> Iterator[tuple[int, int, int]]:
    """Every tile of a tree of ``size`` leaves, as (level, index, width)."""
    level = 0
    while True:
        count = size >> (merkle.TILE_HEIGHT * level)
        if count == 0:
            return
        for index in range((count + merkle.TILE_WIDTH - 1) // merkle.TILE_WIDTH):
            yield level, index, min(merkle.TILE_WIDTH, count - index * merkle.TILE_WIDTH)
        if count < merkle.TILE_WIDTH:
            return
        level += 1


# --- writing --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Archived:
    """What ``archive`` did: the folder, the range, the covering checkpoint and the bodies pruned."""

    path: Path
    first: int
    below: int
    checkpoint_size: int
    pruned: int
    entry: int  # the index of the log.archive entry


def boundary_before(store: Store, moment: datetime, first: int) -> int:
    """The first index from ``first`` on recorded at or after ``moment`` (the log's size if none).

    ``recorded_at`` grows with the index (the sequencer stamps entries as it takes them), so a binary
    search finds it in O(log n) reads.
    """
    stamp = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    low, high = first, store.size()
    while low < high:
        mid = (low + high) // 2
        body = store.entry(mid)
        if body is None:
            raise IntegrityError(f"entry {mid} is missing from the log; run `graven verify`")
        if str(orjson.loads(body).get("recorded_at", "")) < stamp:
            low = mid + 1
        else:
            high = mid
    return low


def archive(
    trail: Trail,
    dest: str | Path,
    *,
    below: int | None = None,
    before: datetime | None = None,
    prune: bool = True,
    actor: Any = None,
) -> Archived:
    """Write entries ``archived_below() .. below - 1`` (or those recorded before ``before``) to the
    archive folder ``dest``, record it, and prune their bodies from the live log unless ``prune`` is
    false. Refused, with nothing changed, when no signed checkpoint covers the range."""
    store = trail.store
    dest = Path(dest)
    if (below is None) == (before is None):
        raise ConfigError("give exactly one of --below INDEX or --before TIME")
    first = store.archived_below()
    if before is not None:
        below = boundary_before(store, before, first)
    assert below is not None
    size = store.size()
    if below > size:
        raise ConfigError(f"--below {below} is past the end of the log ({size} entries)")
    if below <= first:
        raise ConfigError(f"nothing to archive: entries below {first} are archived already (asked below {below})")
    covering = [c for c in store.checkpoints() if c.size >= below]
    if not covering:
        latest = store.latest_checkpoint()
        newest = f"the newest covers {latest.size} entries" if latest else "none is stored"
        raise ConfigError(
            f"entries {first}..{below - 1} are not all covered by a signed checkpoint ({newest}); "
            "run `graven checkpoint` first, then archive"
        )
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConfigError(f"{dest} exists and is not an empty folder: archives are never overwritten")
    checkpoint = min(covering, key=lambda c: c.size)
    digest = _write(store, dest, first, below, checkpoint.size, checkpoint.note, trail.origin)
    check = verify_archive(dest, [Verifier.from_text(trail.verifier_key)])
    if not check.ok:
        raise IntegrityError(f"the archive written to {dest} does not check ({check.message}); nothing was pruned")
    metadata = {"first": first, "below": below, "checkpoint_size": checkpoint.size, "manifest_sha256": digest,
                "archive": dest.name, "pruned": prune}  # fmt: skip
    entry = trail.record({
        "action": ARCHIVE_ACTION, "actor": actor or _SYSTEM, "source": "cli", "metadata": metadata,
        "targets": [{"type": "log", "id": trail.origin}],
        "reason": f"entries {first}..{below - 1} archived to {dest.name}" + (" and pruned" if prune else ""),
    })  # fmt: skip
    with store.write() as tx:
        tx.mark_archived(below, dest.name, digest)
        pruned = tx.prune(first, below) if prune else 0
    return Archived(dest, first, below, checkpoint.size, pruned, entry)


def _write(store: Store, dest: Path, first: int, below: int, checkpoint_size: int, note: str, origin: str) -> str:
    """Write the archive into a fresh folder beside ``dest``, sync it, then move it into place."""
    temp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    try:
        entries_sha = hashlib.sha256()
        written = first
        with store.scan() as scan, open(temp / "entries.jsonl", "wb") as out:
            chunk: list[bytes] = []
            for index, body in scan.entries():
                if index < first:
                    continue
                if index >= below:
                    break
                if index != written:
                    raise IntegrityError(f"entry {written} is missing from the log; run `graven verify`")
                chunk.append(body)
                written += 1
                if len(chunk) == 4096:
                    _write_lines(out, entries_sha, chunk)
                    chunk = []
            _write_lines(out, entries_sha, chunk)
            if written != below:
                raise IntegrityError(f"entry {written} is missing from the log; run `graven verify`")
            _sync(out)
            widths = {(level, index): width for level, index, width in tile_widths(below)}
            for level, index, blob in scan.tiles():
                width = widths.pop((level, index), None)
                if width is None:
                    continue
                if len(blob) < merkle.HASH_SIZE * width:
                    raise IntegrityError(f"the stored tile {level}/{index} is short; run `graven verify`")
                path = temp / tile_path(level, index, width)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(blob[: merkle.HASH_SIZE * width])
            if widths:
                level, index = min(widths)
                raise IntegrityError(f"the stored tile {level}/{index} is missing; run `graven verify`")
        _, hashes = store.tree_hashes(merkle.consistency_nodes(below, checkpoint_size))
        proof = merkle.consistency_proof(below, checkpoint_size, hashes)
        (temp / "checkpoint").write_text(note)
        manifest = {
            "format": FORMAT, "origin": origin, "first": first, "below": below,
            "checkpoint_size": checkpoint_size, "consistency": [base64.b64encode(h).decode() for h in proof],
            "entries_sha256": entries_sha.hexdigest(), "created_at": datetime.now(UTC).isoformat(),
        }  # fmt: skip
        data = orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n"
        (temp / "manifest.json").write_bytes(data)
        _sync_tree(temp)
        if dest.exists():
            _move_into(temp, dest)
        else:
            temp.rename(dest)
        sync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return hashlib.sha256(data).hexdigest()


def _write_lines(out: Any, digest: Any, bodies: list[bytes]) -> None:
    if bodies:
        data = b"\n".join(bodies) + b"\n"
        out.write(data)
        digest.update(data)


def _move_into(temp: Path, dest: Path) -> None:
    for child in temp.iterdir():
        child.rename(dest / child.name)
    temp.rmdir()


def _sync(handle: Any) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _sync_tree(root: Path) -> None:
    """Make every file under ``root`` durable: one ``syncfs`` of its file system where Linux has it
    (thousands of tile files would each cost a journal commit), else an ``fsync`` per file."""
    syncfs = getattr(_libc(), "syncfs", None)
    if syncfs is not None:
        fd = os.open(root, os.O_RDONLY)
        try:
            if syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    for folder, _, files in os.walk(root):
        for name in files:
            with open(Path(folder) / name, "rb+") as handle:
                _sync(handle)
        sync_dir(Path(folder))


def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
    except OSError:
        return None


# --- checking -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArchiveCheck:
    """The outcome of checking one archive; ``root`` is the tree head at ``below`` when it holds."""

    ok: bool
    message: str
    first: int = 0
    below: int = 0
    index: int | None = None
    root: bytes | None = None


def verify_archive(path: str | Path, verifiers: Sequence[Verifier]) -> ArchiveCheck:
    """Check an archive folder offline: every entry against the tiles, the tiles against the signed
    checkpoint (through the consistency proof), the signature against the trusted keys."""
    folder = Path(path)
    try:
        manifest = orjson.loads((folder / "manifest.json").read_bytes())
        first, below, size = int(manifest["first"]), int(manifest["below"]), int(manifest["checkpoint_size"])
        proof = [base64.b64decode(h, validate=True) for h in manifest["consistency"]]
        note = (folder / "checkpoint").read_text()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return ArchiveCheck(False, f"{folder} is not a readable Graven archive ({exc})")
    if manifest.get("format") != FORMAT or not 0 <= first < below <= size:
        return ArchiveCheck(False, f"{folder}: unknown archive format or range {first}..{below} (size {size})")
    try:
        checkpoint, _ = open_checkpoint(note, list(verifiers))
    except NoteError as exc:
        return ArchiveCheck(False, f"{folder}: the checkpoint is not signed by the trusted key ({exc})", first, below)
    if checkpoint.size != size or checkpoint.origin != manifest.get("origin"):
        return ArchiveCheck(False, f"{folder}: the checkpoint is not the one the manifest names", first, below)
    tiles: dict[merkle.Tile, bytes] = {}
    for level, index, width in tile_widths(below):
        try:
            tiles[(level, index)] = (folder / tile_path(level, index, width)).read_bytes()
        except OSError:
            return ArchiveCheck(False, f"{folder}: the tile {tile_path(level, index, width)} is missing", first, below)
    leaves = b"".join(tiles[(0, index)] for index in range((below + merkle.TILE_WIDTH - 1) // merkle.TILE_WIDTH))
    if len(leaves) != merkle.HASH_SIZE * below:
        return ArchiveCheck(False, f"{folder}: the level-0 tiles do not hold {below} hashes", first, below)
    leaf_list = [leaves[k : k + merkle.HASH_SIZE] for k in range(0, len(leaves), merkle.HASH_SIZE)]
    levels = audit.tree_levels(leaf_list)
    for (level, index), blob in sorted(tiles.items()):
        start = index * merkle.TILE_WIDTH
        if level and b"".join(levels[merkle.TILE_HEIGHT * level][start : start + len(blob) // 32]) != blob:
            return ArchiveCheck(False, f"{folder}: the tile {level}/{index} does not match the leaves beneath it",
                                first, below)  # fmt: skip
    root = audit.root_at(levels, below)
    if not merkle.verify_consistency(below, size, root, checkpoint.root_hash, proof):
        return ArchiveCheck(
            False, f"{folder}: the tree of {below} entries is not consistent with the signed checkpoint of size {size}",
            first, below,
        )  # fmt: skip
    index = first
    try:
        for line in _lines(folder / "entries.jsonl"):
            if index >= below or merkle.leaf_hash(line) != leaf_list[index]:
                return ArchiveCheck(
                    False, f"{folder}: entry {index} does not match the hash the tree holds for it",
                    first, below, index,
                )  # fmt: skip
            index += 1
    except OSError as exc:
        return ArchiveCheck(False, f"{folder}: cannot read entries.jsonl ({exc})", first, below)
    if index != below:
        return ArchiveCheck(False, f"{folder}: entries {index}..{below - 1} are missing", first, below, index)
    return ArchiveCheck(
        True,
        f"The archive {folder.name} is intact: entries {first}..{below - 1} match its tiles and the signed "
        f"checkpoint of size {size}.",
        first, below, None, root,
    )  # fmt: skip


def archive_folders(path: str | Path) -> list[Path]:
    """The archives at ``path``: the folder itself when it is one, else its archive subfolders."""
    folder = Path(path)
    if (folder / "manifest.json").exists():
        return [folder]
    found = sorted(p.parent for p in folder.glob("*/manifest.json"))
    if not found:
        raise ConfigError(f"no Graven archive at {folder} (no manifest.json in it or its subfolders)")
    return found


def _lines(path: Path) -> Iterator[bytes]:
    """The lines of a file without their newlines, read in large blocks."""
    rest = b""
    with open(path, "rb") as handle:
        while block := handle.read(1 << 23):
            lines = (rest + block).split(b"\n")
            rest = lines.pop()
            yield from lines
    if rest:
        yield rest


def check_archives(trail: Trail, path: str | Path, trusted: Sequence[Verifier]) -> list[audit.Problem]:
    """Findings for the archives at ``path``: each must check offline and hold this log's history."""
    problems: list[audit.Problem] = []
    for folder in archive_folders(path):
        check = verify_archive(folder, trusted)
        where = check.first if check.index is None else check.index
        if not check.ok:
            problems.append(audit.Problem(where, "modified", f"Archive: {check.message}", 3))
            continue
        nodes = merkle.root_nodes(check.below)
        size, hashes = trail.store.tree_hashes(nodes)
        held = size >= check.below and all(n in hashes for n in nodes)
        if not held or merkle.root_from(check.below, hashes) != check.root:
            message = (
                f"The archive {folder.name} holds another history than this log for entries "
                f"{check.first}..{check.below - 1}."
            )
            problems.append(audit.Problem(check.first, "forked", message, 3))
    return problems


def vouched_below(entries: Iterable[tuple[int, bytes]]) -> int:
    """The greatest archived boundary that the given ``log.archive`` entries record."""
    best = 0
    for _, body in entries:
        try:
            best = max(best, int(orjson.loads(body)["metadata"]["below"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return best


__all__ = [
    "ARCHIVE_ACTION",
    "ArchiveCheck",
    "Archived",
    "archive",
    "archive_folders",
    "tile_path",
    "verify_archive",
]
