"""The ``GRAVEN = {...}`` setting, read and checked once, and the trail it opens.

Every key is optional::

    GRAVEN = {
        "LOG": "sqlite:///audit.db",          # or a path, or postgresql://...; default $GRAVEN_DB or .graven/trail.db
        "SIGNING_KEY": "audit.key",           # default $GRAVEN_SIGNING_KEY or .graven/signing.key
        "FINGERPRINT_KEY": None,              # a file of >= 16 bytes keying fingerprints of redacted values
        "MODELS": {"shop.Order": {"exclude": ["updated_at"]}},   # or ["shop.Order", ...]
        "REDACT": ["iban"],                   # more secret field names, beside passwords, tokens, keys...
        "PERSONAL_FIELDS": [], "SUBJECT_TYPES": ["user", "customer"], "SUBJECT_KEYS": None,
        "TRUSTED_PROXIES": [],                # networks whose X-Forwarded-For is believed
        "RECORD_404": True,                   # an Http404 raised by a view is a denial
        "WITNESSES": [],                      # tlog-witness URLs
        "SAME_DATABASE": [],                  # aliases whose PostgreSQL database holds the log itself
    }

:func:`settings` validates the whole dictionary and raises :class:`graven.errors.ConfigError`
naming the key, the rule and what was given; the system checks (``manage.py check``) report the
same messages as ``graven.E001``.
"""

from __future__ import annotations

import ipaddress
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed

from graven.errors import ConfigError

if TYPE_CHECKING:
    from graven.trail import Trail

KEYS = frozenset({
    "LOG", "SIGNING_KEY", "FINGERPRINT_KEY", "MODELS", "REDACT", "PERSONAL_FIELDS", "SUBJECT_TYPES",
    "SUBJECT_KEYS", "TRUSTED_PROXIES", "RECORD_404", "WITNESSES", "DEFAULT_ACTOR", "SOURCE", "SAME_DATABASE",
})  # fmt: skip
MODEL_OPTIONS = frozenset({"exclude", "include", "redact", "name"})


@dataclass(frozen=True)
class ModelOptions:
    """How one model is tracked, as the setting names it (fields are checked against the model later)."""

    label: str
    exclude: tuple[str, ...] = ()
    include: tuple[str, ...] | None = None
    redact: tuple[str, ...] = ()
    name: str | None = None


@dataclass(frozen=True)
class Settings:
    log: str | None = None
    signing_key: str | None = None
    fingerprint_key: str | None = None
    models: tuple[ModelOptions, ...] = ()
    redact: tuple[str, ...] = ()
    personal_fields: tuple[str, ...] = ()
    subject_types: tuple[str, ...] = ("user", "customer")
    subject_keys: str | None = None
    trusted_proxies: tuple[str, ...] = ()
    record_404: bool = True
    witnesses: tuple[str, ...] | None = None
    default_actor: str = "system:django"
    source: str = "web"
    same_database: tuple[str, ...] = ()  # database aliases whose events go into the log's own outbox
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


def _text(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if hasattr(value, "__fspath__"):
        return str(value)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"GRAVEN[{key!r}] must be a non-empty string or a path; got {value!r}")
    return value


def _names(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"GRAVEN[{key!r}] must be a list of non-empty strings; got {value!r}")
    return tuple(value)


def _models(value: Any) -> tuple[ModelOptions, ...]:
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, Sequence) and not isinstance(value, str):
        items = [(label, {}) for label in value]
    else:
        raise ConfigError(f"GRAVEN['MODELS'] must map 'app_label.Model' to options, or list labels; got {value!r}")
    out = []
    for label, options in items:
        where = f"GRAVEN['MODELS'][{label!r}]"
        if not isinstance(label, str) or label.count(".") != 1:
            raise ConfigError(f"GRAVEN['MODELS']: {label!r} is not an 'app_label.ModelName' label")
        if not isinstance(options, Mapping):
            choices = ", ".join(sorted(MODEL_OPTIONS))
            raise ConfigError(f"{where} must be a dict of options ({choices}); got {options!r}")
        unknown = sorted(set(options) - MODEL_OPTIONS)
        if unknown:
            raise ConfigError(f"{where}: unknown option {unknown[0]!r} (options: {', '.join(sorted(MODEL_OPTIONS))})")
        include = options.get("include")
        name = options.get("name")
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError(f"{where}['name'] must be a non-empty string; got {name!r}")
        out.append(ModelOptions(
            label,
            exclude=_names(f"MODELS'][{label!r}]['exclude", options.get("exclude", ())),
            include=None if include is None else _names(f"MODELS'][{label!r}]['include", include),
            redact=_names(f"MODELS'][{label!r}]['redact", options.get("redact", ())),
            name=name,
        ))  # fmt: skip
    return tuple(out)


def parse(raw: Any) -> Settings:
    """The settings from a ``GRAVEN`` value; :class:`ConfigError` names the first wrong key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"GRAVEN must be a dict; got {type(raw).__name__}")
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise ConfigError(f"GRAVEN: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(KEYS))})")
    proxies = _names("TRUSTED_PROXIES", raw.get("TRUSTED_PROXIES", ()))
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(
                f"GRAVEN['TRUSTED_PROXIES']: {proxy!r} is not an IP address or network (e.g. '10.0.0.0/8')"
            ) from None
    record_404 = raw.get("RECORD_404", True)
    if not isinstance(record_404, bool):
        raise ConfigError(f"GRAVEN['RECORD_404'] must be True or False; got {record_404!r}")
    witnesses = raw.get("WITNESSES")
    same_database = _names("SAME_DATABASE", raw.get("SAME_DATABASE", ()))
    for alias in same_database:
        if alias not in django_settings.DATABASES:
            known = ", ".join(sorted(django_settings.DATABASES))
            raise ConfigError(f"GRAVEN['SAME_DATABASE']: {alias!r} is not a database alias (DATABASES: {known})")
    return Settings(
        log=_text("LOG", raw.get("LOG")),
        signing_key=_text("SIGNING_KEY", raw.get("SIGNING_KEY")),
        fingerprint_key=_text("FINGERPRINT_KEY", raw.get("FINGERPRINT_KEY")),
        models=_models(raw.get("MODELS", ())),
        redact=_names("REDACT", raw.get("REDACT", ())),
        personal_fields=_names("PERSONAL_FIELDS", raw.get("PERSONAL_FIELDS", ())),
        subject_types=_names("SUBJECT_TYPES", raw.get("SUBJECT_TYPES", ("user", "customer"))),
        subject_keys=_text("SUBJECT_KEYS", raw.get("SUBJECT_KEYS")),
        trusted_proxies=proxies,
        record_404=record_404,
        witnesses=None if witnesses is None else _names("WITNESSES", witnesses),
        default_actor=_text("DEFAULT_ACTOR", raw.get("DEFAULT_ACTOR")) or "system:django",
        source=_text("SOURCE", raw.get("SOURCE")) or "web",
        same_database=same_database,
        raw=dict(raw),
    )


_lock = threading.Lock()
_settings: Settings | None = None
_trail: Trail | None = None


def settings() -> Settings:
    """The parsed ``GRAVEN`` setting (cached until the setting changes)."""
    global _settings
    if _settings is None:
        _settings = parse(getattr(django_settings, "GRAVEN", None))
    return _settings


def trail(*, with_subject_keys: bool = False) -> Trail:
    """The trail named by the settings, opened once per process (and created if it does not exist).

    ``with_subject_keys``: open (creating it) the subject key store even when no personal fields
    are declared, as forgetting needs (default: beside the signing key, as ``graven forget``).
    """
    global _trail
    with _lock:
        if _trail is not None and with_subject_keys and _trail.subject_keys is None:
            _trail.close()
            _trail = None
        if _trail is None:
            _trail = _open(settings(), with_subject_keys=with_subject_keys)
        return _trail


def _open(conf: Settings, *, with_subject_keys: bool = False) -> Trail:
    from django.core.exceptions import PermissionDenied

    from graven.core.redaction import DEFAULT_PATTERNS, RedactionPolicy
    from graven.core.shredding import PersonalData
    from graven.keys import DEFAULT_KEY
    from graven.opening import open_trail, subject_keys_path

    personal = PersonalData(conf.personal_fields, conf.subject_types) if conf.personal_fields else None
    keys: str | Path | None = conf.subject_keys
    if keys is None and with_subject_keys:
        keys = subject_keys_path(Path(conf.signing_key or os.environ.get("GRAVEN_SIGNING_KEY") or DEFAULT_KEY))
    opened = open_trail(
        conf.log, signing_key=conf.signing_key, fingerprint_key=conf.fingerprint_key, personal=personal,
        subject_keys=keys, witnesses=conf.witnesses, denied=[PermissionDenied],
    )  # fmt: skip
    if conf.redact and opened.redaction is not None:
        opened.redaction = RedactionPolicy(
            patterns=(*DEFAULT_PATTERNS, *conf.redact), fingerprint_key=opened.redaction.fingerprint_key
        )
    return opened


def reset() -> None:
    """Forget the parsed settings and close the trail (tests, and a changed ``GRAVEN`` setting)."""
    global _settings, _trail
    with _lock:
        closing, _trail, _settings = _trail, None, None
    if closing is not None:
        closing.close()


def _changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "GRAVEN":
        reset()


setting_changed.connect(_changed, dispatch_uid="graven.django.conf")
