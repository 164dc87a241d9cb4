"""Forwarder configuration: the ``[forward.NAME]`` tables of ``graven.toml``.

Each table names a sink (``sink = "jsonl"``), a format and that sink's options. Secrets (tokens,
HMAC keys) MUST NOT be written in the file: an option ``token_env`` names an environment variable,
``token_file`` a file, and a literal ``token`` is refused. Writing the file back (``graven forward
add|remove``) keeps every other table; comments are not kept.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graven.errors import ConfigError

DEFAULT_CONFIG = Path("graven.toml")
CONFIG_ENV = "GRAVEN_CONFIG"
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
FORMATS = ("native", "ocsf", "cef", "rfc5424")
MAX_BATCH = 10_000

# Per sink: its options and their types; the first tuple lists the required ones.
_STR, _INT, _FLOAT, _BOOL = str, int, float, bool
SINKS: dict[str, tuple[tuple[str, ...], dict[str, type]]] = {
    "stdout": ((), {}),
    "jsonl": (("path",), {"path": _STR, "prefix": _STR, "max_bytes": _INT, "max_seconds": _FLOAT}),
    "webhook": (
        ("url", "secret"),
        {"url": _STR, "timeout": _FLOAT, "tls_ca": _STR},
    ),
    "hec": (
        ("url", "token"),
        {
            "url": _STR,
            "timeout": _FLOAT,
            "tls_ca": _STR,
            "index": _STR,
            "sourcetype": _STR,
            "ack": _BOOL,
            "channel": _STR,
        },
    ),
    "syslog": (
        ("host", "port"),
        {
            "host": _STR,
            "port": _INT,
            "transport": _STR,
            "tls_ca": _STR,
            "app_name": _STR,
            "hostname": _STR,
            "timeout": _FLOAT,
        },
    ),
    "nats": (("url", "stream", "subject"), {"url": _STR, "stream": _STR, "subject": _STR, "timeout": _FLOAT}),
}
# Options every sink takes.
COMMON: dict[str, type] = {
    "sink": _STR, "format": _STR, "batch": _INT, "proofs": _BOOL, "retry_max_seconds": _FLOAT,
}  # fmt: skip
SECRETS = ("secret", "token", "password")
DEFAULT_FORMAT = {"syslog": "rfc5424"}


@dataclass(frozen=True)
class SinkConfig:
    """One forwarder: its name, sink kind, format and options (secrets by reference only)."""

    name: str
    sink: str
    format: str = "native"
    batch: int = 500
    proofs: bool = True
    retry_max_seconds: float = 60.0
    options: dict[str, Any] = field(default_factory=dict)

    def secret(self, key: str) -> str:
        """The secret ``key`` read from the environment (``KEY_env``) or a file (``KEY_file``)."""
        return read_secret(self.name, key, self.options)

    def to_table(self) -> dict[str, Any]:
        """The TOML table this configuration is written as."""
        table: dict[str, Any] = {"sink": self.sink, "format": self.format, "batch": self.batch}
        if not self.proofs:
            table["proofs"] = False
        if self.retry_max_seconds != 60.0:
            table["retry_max_seconds"] = self.retry_max_seconds
        return {**table, **self.options}


def read_secret(name: str, key: str, options: Mapping[str, Any]) -> str:
    env, file = options.get(f"{key}_env"), options.get(f"{key}_file")
    if env:
        value = os.environ.get(str(env))
        if not value:
            raise ConfigError(f"forwarder {name}: {key}_env names ${env}, which is not set")
        return value
    if file:
        try:
            value = Path(str(file)).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"forwarder {name}: cannot read {key}_file {file}: {exc.strerror}") from None
        if not value:
            raise ConfigError(f"forwarder {name}: {key}_file {file} is empty")
        return value
    raise ConfigError(f"forwarder {name}: needs {key}_env (an environment variable) or {key}_file (a file)")


def parse_sink(name: str, table: Mapping[str, Any]) -> SinkConfig:
    """Check one ``[forward.NAME]`` table; every problem is a ConfigError naming the option."""
    where = f"forwarder {name}"
    if not NAME.fullmatch(name):
        raise ConfigError(f"{where}: the name must be 1-64 of a-z, 0-9, _ and -, starting with a letter or digit")
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: must be a table of options")
    kind = table.get("sink")
    if kind not in SINKS:
        raise ConfigError(f"{where}: sink must be one of {', '.join(SINKS)}; got {kind!r}")
    required, allowed = SINKS[str(kind)]
    options: dict[str, Any] = {}
    for key, value in table.items():
        if key in COMMON:
            _check_type(where, key, value, COMMON[key])
            continue
        if key in SECRETS:
            raise ConfigError(
                f"{where}: {key} must not be written in graven.toml; use {key}_env (an environment variable) "
                f"or {key}_file (a file)"
            )
        base = key.removesuffix("_env").removesuffix("_file")
        if base != key and base in required + tuple(SECRETS):
            _check_type(where, key, value, _STR)
        elif key in allowed:
            _check_type(where, key, value, allowed[key])
        else:
            known = sorted([*COMMON, *allowed, *(f"{s}_env" for s in required if s in SECRETS)])
            raise ConfigError(f"{where}: unknown option {key!r} for a {kind} sink (known: {', '.join(known)})")
        options[key] = value
    for key in required:
        if key in SECRETS:
            if not (options.get(f"{key}_env") or options.get(f"{key}_file")):
                raise ConfigError(f"{where}: needs {key}_env (an environment variable) or {key}_file (a file)")
        elif key not in options:
            raise ConfigError(f"{where}: a {kind} sink needs {key}")
    fmt = table.get("format", DEFAULT_FORMAT.get(str(kind), "native"))
    if fmt not in FORMATS:
        raise ConfigError(f"{where}: format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    batch = table.get("batch", 500)
    if not 1 <= batch <= MAX_BATCH:
        raise ConfigError(f"{where}: batch must be from 1 to {MAX_BATCH}; got {batch}")
    retry = float(table.get("retry_max_seconds", 60.0))
    if not 0.01 <= retry <= 86_400:
        raise ConfigError(f"{where}: retry_max_seconds must be from 0.01 to 86400; got {retry}")
    for key in ("max_bytes", "port", "max_seconds", "timeout"):
        if key in options and not options[key] > 0:
            raise ConfigError(f"{where}: {key} must be above 0; got {options[key]}")
    if kind == "syslog":
        transport = options.setdefault("transport", "tcp")
        if transport not in ("udp", "tcp", "tls"):
            raise ConfigError(f"{where}: transport must be udp, tcp or tls; got {transport!r}")
        if options["port"] > 65535:
            raise ConfigError(f"{where}: port must be from 1 to 65535; got {options['port']}")
    if kind in ("webhook", "hec") and not str(options["url"]).startswith(("http://", "https://")):
        raise ConfigError(f"{where}: url must start with http:// or https://; got {options['url']!r}")
    if kind == "nats" and not str(options["url"]).startswith(("nats://", "tls://")):
        raise ConfigError(f"{where}: url must start with nats:// or tls://; got {options['url']!r}")
    return SinkConfig(
        name=name, sink=str(kind), format=str(fmt), batch=int(batch), proofs=bool(table.get("proofs", True)),
        retry_max_seconds=retry, options=options,
    )  # fmt: skip


def _check_type(where: str, key: str, value: Any, kind: type) -> None:
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (kind is str and not value):
        raise ConfigError(f"{where}: {key} must be {_KIND_NAMES[kind]}; got {value!r}")


_KIND_NAMES = {str: "a non-empty string", int: "an integer", float: "a number", bool: "true or false"}


def config_path(path: str | Path | None = None) -> Path:
    """The configuration file: ``path``, else ``$GRAVEN_CONFIG``, else ``graven.toml`` here."""
    return Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def read_document(path: Path) -> dict[str, Any]:
    """The whole TOML document (empty when the file does not exist)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def load(path: str | Path | None = None) -> dict[str, SinkConfig]:
    """Every forwarder configured in the file, checked."""
    where = config_path(path)
    forward = read_document(where).get("forward", {})
    if not isinstance(forward, dict):
        raise ConfigError(f"{where}: [forward] must be a table of [forward.NAME] tables")
    return {name: parse_sink(name, table) for name, table in forward.items()}


def get(name: str, path: str | Path | None = None) -> SinkConfig:
    configs = load(path)
    if name not in configs:
        known = ", ".join(configs) or "none"
        raise ConfigError(f"no forwarder named {name!r} in {config_path(path)} (configured: {known})")
    return configs[name]


def write_sink(path: Path, config: SinkConfig | None, name: str) -> None:
    """Add, replace (``config``) or remove (``None``) one forwarder; the file is replaced atomically."""
    document = read_document(path)
    forward = dict(document.get("forward", {}))
    if config is None:
        forward.pop(name, None)
    else:
        forward[name] = config.to_table()
    document["forward"] = forward
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(dumps(document), encoding="utf-8")
    os.replace(temporary, path)


# --- a small TOML writer for the shapes above: tables of scalars, arrays of scalars ---------------

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _key(key: str) -> str:
    return key if _BARE.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if value != value else ("inf" if value > 0 else "-inf"))
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write a {type(value).__name__} to TOML")


def dumps(document: Mapping[str, Any], prefix: str = "") -> str:
    """TOML text for ``document``: scalars and arrays first, then each sub-table as ``[a.b]``."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in document.items():
        if isinstance(value, Mapping):
            tables.append((f"{prefix}{_key(key)}", value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    text = "\n".join(lines) + ("\n" if lines else "")
    for name, table in tables:
        scalars = any(not isinstance(v, Mapping) for v in table.values())
        body = dumps(table, prefix=f"{name}.")
        if scalars or not table:
            text += f"\n[{name}]\n" + body
        else:
            text += body
    return text.lstrip("\n")
