"""Opening a log: ``init`` creates one (and its signing key), ``open_trail`` opens it as a Trail.

Settings not given as arguments come from the environment (``GRAVEN_DB``, ``GRAVEN_LOG``, ``GRAVEN_SIGNING_KEY``,
``GRAVEN_FINGERPRINT_KEY``, ``GRAVEN_PERSONAL_FIELDS``, ``GRAVEN_SUBJECT_TYPES``,
``GRAVEN_SUBJECT_KEYS``, ``GRAVEN_WITNESSES``), then from the defaults under ``.graven/``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from graven.checkpoint_file import CheckpointFile
from graven.core.note import Signer
from graven.core.redaction import RedactionPolicy
from graven.core.shredding import PersonalData
from graven.errors import ConfigError
from graven.keys import (
    DEFAULT_DB,
    DEFAULT_KEY,
    create_signing_key,
    current_stored_key,
    history_path,
    load_history,
    load_signing_key,
    retired_path,
)
from graven.private_files import make_private_dir
from graven.store import open_store, sqlite_path
from graven.store.logs import path_for, select_log
from graven.subject_keys import DEFAULT_SUBJECT_KEYS, SubjectKeys
from graven.trail import DEFAULT_POLICY, Trail
from graven.witnessing.client import witness_prefix, witnesses_from_env
from graven.witnessing.pusher import attach


def init(
    url: str | Path | None = None,
    *,
    signing_key: str | Path | None = None,
    witness: str | Path | None = None,
    origin: str | None = None,
    log: str | None = None,
) -> Trail:
    """Create a log (idempotent) and its signing key if the key file does not exist yet.

    ``log`` (or ``?log=`` on the URL) creates one of several independent logs in the database,
    with its own key file (see :mod:`graven.store.logs`). Folders created for them are 0700, the
    files 0600 (see :mod:`graven.private_files`)."""
    db, log = select_log(str(_db(url)), _log(log))
    key_path = path_for(Path(signing_key or os.environ.get("GRAVEN_SIGNING_KEY") or DEFAULT_KEY), log)
    if not str(db).startswith(("postgresql://", "postgres://")):
        make_private_dir(sqlite_path(str(db)).parent)  # 0700: the log and its key are the owner's alone
    store = open_store(db, create=True)
    try:
        existing = store.settings()
    except ConfigError:
        existing = {}
    name = existing.get("origin") or origin or f"graven.local/{uuid.uuid4().hex[:16]}{'/' + log if log else ''}"
    signer = load_signing_key(key_path) if key_path.exists() else create_signing_key(key_path, name)
    if existing and current_stored_key(existing) not in (None, signer.verifier().to_text()):
        store.close()
        raise ConfigError(f"{key_path} is not the signing key of the log at {db}")
    store.initialize({"origin": name, "verifier_key": signer.verifier().to_text()})
    trail = Trail(store, signer=signer, witness=_witness(witness, key_path))
    trail.checkpoint()
    return trail


def open_trail(
    url: str | Path | None = None,
    *,
    signing_key: str | Path | Signer | None = None,
    witness: str | Path | None = None,
    create: bool = True,
    clock: Callable[[], datetime] | None = None,
    checkpoint_interval: float = 1.0,
    fingerprint_key: str | Path | None = None,
    personal: PersonalData | None = None,
    subject_keys: str | Path | SubjectKeys | None = None,
    witnesses: Sequence[str] | None = None,
    denied: Iterable[type[BaseException]] = (),
    log: str | None = None,
) -> Trail:
    """Open the log at ``url`` (default ``GRAVEN_DB`` or ``.graven/trail.db``), creating it if asked.

    ``denied`` names exception types that mean "not allowed" (a framework's ``PermissionDenied``):
    an ``action()`` block they escape from is recorded as ``denied``, like :class:`graven.Denied`.

    ``witnesses`` (or ``GRAVEN_WITNESSES``, comma separated) are tlog-witness URLs: every new
    checkpoint is pushed to them from a background thread, and ``close()`` waits a bounded time
    for the last push.

    ``fingerprint_key`` (or ``GRAVEN_FINGERPRINT_KEY``) names a file, kept outside the database,
    whose bytes key the HMAC fingerprints of redacted values.

    ``personal`` (or ``GRAVEN_PERSONAL_FIELDS`` and ``GRAVEN_SUBJECT_TYPES``, comma-separated)
    declares the fields sealed per data subject; their keys live in ``subject_keys`` (or
    ``GRAVEN_SUBJECT_KEYS``; default ``subject-keys.db`` beside the signing key), which is opened
    whenever it exists, so that sealed values read back in clear until forgotten.

    The signing key comes from ``signing_key`` or ``GRAVEN_SIGNING_KEY`` (default
    ``.graven/signing.key``). Without it a signed log can be read and verified against a given key,
    but writes are refused: an entry no checkpoint would ever cover MUST NOT be written.

    ``checkpoint_interval`` bounds how long an entry stays unsigned (see :class:`Trail`); the
    newest checkpoint is kept in ``witness`` (default: ``<signing key>.checkpoint`` beside the key),
    the reference that a rewrite of the database cannot reach.

    ``log`` (or ``?log=NAME`` on the URL) selects one of several independent logs in the database,
    each with its own tree, origin, checkpoints and keys: its key file, kept checkpoint and subject
    keys are the default ones with the log's name inserted (``signing.tenant-a.key``; see
    :mod:`graven.store.logs`).
    """
    db, log = select_log(str(_db(url)), _log(log))
    key_source: str | Path | Signer = signing_key or os.environ.get("GRAVEN_SIGNING_KEY") or DEFAULT_KEY
    if not isinstance(key_source, Signer):
        key_source = path_for(Path(key_source), log)
    urls = witnesses_from_env() if witnesses is None else tuple(witness_prefix(u, "witnesses") for u in witnesses)
    try:
        store = open_store(db)
        stored_key = current_stored_key(store.settings())
    except ConfigError:
        if not create:
            raise
        if isinstance(key_source, Signer):
            raise ConfigError("create the log with graven.init(url, signing_key=path) first") from None
        init(db, signing_key=key_source, witness=witness, origin=_new_origin(log)).close()
        store = open_store(db)
        stored_key = current_stored_key(store.settings())
    explicit = signing_key is not None or bool(os.environ.get("GRAVEN_SIGNING_KEY"))
    signer: Signer | None
    if isinstance(key_source, Signer):
        signer = key_source
    else:
        key_path = Path(key_source)
        signer = load_signing_key(key_path) if key_path.exists() else None
        if signer is None and explicit:
            store.close()
            raise ConfigError(f"signing key {key_path} does not exist")
    foreign = signer is not None and stored_key not in (None, signer.verifier().to_text())
    if foreign and explicit:
        store.close()
        raise ConfigError(f"the signing key {key_source} does not belong to the log at {db}")
    trail = Trail(
        store, signer=None if foreign else signer, clock=clock, checkpoint_interval=checkpoint_interval,
        witness=_witness(witness, None if isinstance(key_source, Signer) else Path(key_source)),
        redaction=_policy(fingerprint_key or os.environ.get("GRAVEN_FINGERPRINT_KEY")),
        denied=_exception_types(denied), **_rotated(None if isinstance(key_source, Signer) else Path(key_source)),
        **_shredding(personal, subject_keys, None if isinstance(key_source, Signer) else Path(key_source), log),
    )  # fmt: skip
    attach(trail, urls)  # each new checkpoint pushed to the witnesses in the background
    if foreign:
        # The default key does not match what the log says: either it belongs to another log, or
        # the log was replaced. Reading works; verification trusts the key (and so reports a fork
        # if the log was replaced); writing is refused until the right key is named.
        assert signer is not None
        trail.trusted_signer = signer
        trail.write_refusal = (
            f"the signing key {key_source} does not match the log at {db}; name this log's key with "
            "--signing-key (or GRAVEN_SIGNING_KEY), or run `graven verify` if the log may have been replaced"
        )
    elif signer is None and stored_key is not None:
        # A signed log whose key is not where it is looked for: entries written now would never be
        # covered by a signed checkpoint, so writing is refused; reading and verifying still work.
        trail.write_refusal = (
            f"refusing to write: the signing key of the log at {db} is missing (looked for {key_source}); "
            "restore it or name it with --signing-key (or GRAVEN_SIGNING_KEY); reading and "
            "`graven verify --key` still work"
        )
    return trail


def _rotated(key_path: Path | None) -> dict[str, Any]:
    """The key history beside the signing key, if the log rotated its key, and the previous keys
    still in their overlap (each co-signs checkpoints below its bound while its file is kept)."""
    if key_path is None or not history_path(key_path).exists():
        return {}
    history = load_history(history_path(key_path))
    co_signers = []
    for key in history.keys[:-1]:
        if key.until is None or key.revoked is not None:
            continue
        path = retired_path(key_path, key.verifier.key_id)
        try:
            signer = load_signing_key(path) if path.exists() else None
        except ConfigError:
            signer = None  # an unreadable old key only ends its overlap early: the new key signs alone
        if signer is not None and signer.verifier().to_text() == key.verifier.to_text():
            co_signers.append((signer, key.until))
    return {"key_history": history, "co_signers": co_signers}


def _exception_types(types: Iterable[type[BaseException]]) -> tuple[type[BaseException], ...]:
    out = tuple(types)
    for kind in out:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise ConfigError(f"denied: must be exception types; got {kind!r}")
    return out


def _log(log: str | None) -> str | None:
    """The log named by ``log``, else ``GRAVEN_LOG`` (None: the database's own log)."""
    return log if log is not None else os.environ.get("GRAVEN_LOG") or None


def _db(url: str | Path | None) -> str | Path:
    """The log named by ``url``, else ``GRAVEN_DB``, else the default in ``.graven/``."""
    return url if url is not None else os.environ.get("GRAVEN_DB") or DEFAULT_DB


def _policy(key_file: str | Path | None) -> RedactionPolicy:
    """The default redaction policy, with fingerprints keyed by a file's bytes when one is named."""
    if not key_file:
        return DEFAULT_POLICY
    try:
        key = Path(key_file).read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read fingerprint key {key_file}: {exc.strerror}") from None
    if len(key) < 16:
        raise ConfigError(f"fingerprint key {key_file} must hold at least 16 bytes; it has {len(key)}")
    return RedactionPolicy(fingerprint_key=key)


def _new_origin(log: str | None) -> str | None:
    return f"graven.local/{uuid.uuid4().hex[:16]}/{log}" if log else None


def _shredding(
    personal: PersonalData | None, keys: str | Path | SubjectKeys | None, key_path: Path | None, log: str | None = None
) -> dict[str, Any]:
    """The personal-data declaration and the subject key store, from arguments or the environment."""
    if personal is None and (fields := os.environ.get("GRAVEN_PERSONAL_FIELDS")):
        types = os.environ.get("GRAVEN_SUBJECT_TYPES") or "customer,user"
        personal = PersonalData(
            tuple(f.strip() for f in fields.split(",") if f.strip()),
            tuple(t.strip() for t in types.split(",") if t.strip()),
        )
    if isinstance(keys, SubjectKeys):
        return {"personal": personal, "subject_keys": keys}
    source = keys or os.environ.get("GRAVEN_SUBJECT_KEYS")
    path = Path(source) if source else path_for(subject_keys_path(key_path), log)
    if personal is None and not source and not path.exists():
        return {}
    return {"personal": personal, "subject_keys": SubjectKeys(path)}


def subject_keys_path(key_path: Path | None) -> Path:
    """Where the subject key store is kept by default: beside the signing key."""
    return DEFAULT_SUBJECT_KEYS if key_path is None else key_path.with_name(DEFAULT_SUBJECT_KEYS.name)


def _witness(witness: str | Path | None, key_path: Path | None) -> CheckpointFile | None:
    """The checkpoint file kept beside the signing key (or where ``witness`` says)."""
    if witness is not None:
        return CheckpointFile(Path(witness))
    if key_path is not None:
        return CheckpointFile(key_path.with_name(key_path.name + ".checkpoint"))
    return None


__all__ = ["init", "open_trail", "subject_keys_path"]
