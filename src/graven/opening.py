"""Opening a log: ``init`` creates one (and its signing key), ``open_trail`` opens it as a Trail.

Settings not given as arguments come from the environment (``GRAVEN_DB``, ``GRAVEN_SIGNING_KEY``,
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
from graven.keys import DEFAULT_DB, DEFAULT_KEY, create_signing_key, load_signing_key
from graven.private_files import make_private_dir
from graven.store import open_store, sqlite_path
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
) -> Trail:
    """Create a log (idempotent) and its signing key if the key file does not exist yet.

    Folders created for them are 0700, the files 0600 (see :mod:`graven.private_files`)."""
    db = _db(url)
    key_path = Path(signing_key or os.environ.get("GRAVEN_SIGNING_KEY") or DEFAULT_KEY)
    if not str(db).startswith(("postgresql://", "postgres://")):
        make_private_dir(sqlite_path(str(db)).parent)  # 0700: the log and its key are the owner's alone
    store = open_store(db, create=True)
    try:
        existing = store.settings()
    except ConfigError:
        existing = {}
    name = existing.get("origin") or origin or f"graven.local/{uuid.uuid4().hex[:16]}"
    signer = load_signing_key(key_path) if key_path.exists() else create_signing_key(key_path, name)
    if existing and existing.get("verifier_key") not in (None, signer.verifier().to_text()):
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
    """
    db = _db(url)
    key_source = signing_key or os.environ.get("GRAVEN_SIGNING_KEY") or DEFAULT_KEY
    urls = witnesses_from_env() if witnesses is None else tuple(witness_prefix(u, "witnesses") for u in witnesses)
    try:
        store = open_store(db)
        stored_key = store.settings().get("verifier_key")
    except ConfigError:
        if not create:
            raise
        if isinstance(key_source, Signer):
            raise ConfigError("create the log with graven.init(url, signing_key=path) first") from None
        init(db, signing_key=key_source, witness=witness).close()
        store = open_store(db)
        stored_key = store.settings().get("verifier_key")
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
        denied=_exception_types(denied),
        **_shredding(personal, subject_keys, None if isinstance(key_source, Signer) else Path(key_source)),
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


def _exception_types(types: Iterable[type[BaseException]]) -> tuple[type[BaseException], ...]:
    out = tuple(types)
    for kind in out:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise ConfigError(f"denied: must be exception types; got {kind!r}")
    return out


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


def _shredding(
    personal: PersonalData | None, keys: str | Path | SubjectKeys | None, key_path: Path | None
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
    path = Path(source) if source else subject_keys_path(key_path)
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
