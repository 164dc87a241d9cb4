"""``graven forward add|list|remove|status|run`` and ``graven receive verify``: thin skins over
:mod:`graven.forward`. Every change of a forwarder is itself recorded in the log
(``forward.sink.add``, ``forward.sink.change``, ``forward.sink.remove``)."""

from __future__ import annotations

import getpass
import os
import re
import signal
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import click
import orjson

from graven.cli.options import log_options
from graven.context import actor_of
from graven.errors import ConfigError, GravenError
from graven.forward import config as forward_config
from graven.forward.cursor import Cursors
from graven.forward.proofs import check_lines
from graven.forward.runner import Forwarder, guarded, status
from graven.forward.sinks import make_sink
from graven.keys import load_verifier
from graven.render import visible
from graven.trail import Trail


def _say(text: str, *, err: bool = False) -> None:
    """One line that may hold text from outside (a receiver's answer, a file name), control characters
    made visible."""
    click.echo(visible(text), err=err)


def _root() -> Any:
    return click.get_current_context().find_root().obj


def _config_option(function: Any) -> Any:
    return click.option(
        "--config", "config_file", envvar=forward_config.CONFIG_ENV, metavar="FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        help="The configuration file (default graven.toml here, or $GRAVEN_CONFIG).",
    )(log_options(function))  # fmt: skip


def _who() -> dict[str, Any]:
    return actor_of(os.environ.get("GRAVEN_ACTOR") or None) or {"type": "user", "id": getpass.getuser()}


def _record_change(trail: Trail, action: str, name: str, table: dict[str, Any] | None) -> int:
    event: dict[str, Any] = {"action": action, "actor": _who(), "targets": [{"type": "forwarder", "id": name}],
                             "source": "cli"}  # fmt: skip
    if table is not None:
        event["metadata"] = {"config": table}
    return trail.record(event)


def _parse_value(text: str) -> Any:
    """A KEY=VALUE value: a TOML number or boolean when it reads as one, else the text itself."""
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    return value if isinstance(value, bool | int | float) else text


@click.group("forward")
def forward_group() -> None:
    """Forward the log to SIEMs, syslog, webhooks, streams and files, with proofs (graven.toml)."""


@forward_group.command("add")
@click.argument("name")
@click.argument("sink", type=click.Choice(list(forward_config.SINKS)))
@click.argument("options", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--replace", is_flag=True, help="Replace a forwarder of the same name.")
@_config_option
def add_command(name: str, sink: str, options: tuple[str, ...], replace: bool, config_file: Path | None) -> None:
    """Add a forwarder: graven forward add siem jsonl path=/var/log/graven format=ocsf.

    The configuration is checked and the receiver reached before anything is written; secrets are
    named by KEY_env=VARIABLE or KEY_file=PATH, never written in the file.
    """
    table: dict[str, Any] = {"sink": sink}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.UsageError(f"options must be KEY=VALUE; got {item!r}")
        table[key] = _parse_value(value)
    parsed = forward_config.parse_sink(name, table)
    path = forward_config.config_path(config_file)
    existing = forward_config.load(path)
    if name in existing and not replace:
        raise ConfigError(f"a forwarder named {name!r} exists in {path}; pass --replace to change it")
    probe = make_sink(parsed)
    probe.open()  # unreachable host, bad certificate, missing secret: refused here, nothing written
    probe.close()
    with _root().open() as trail:
        forward_config.write_sink(path, parsed, name)
        action = "forward.sink.change" if name in existing else "forward.sink.add"
        index = _record_change(trail, action, name, parsed.to_table())
    _say(f"forwarder {name} ({sink}, {parsed.format}) written to {path}; recorded as entry {index}")


@forward_group.command("remove")
@click.argument("name")
@_config_option
def remove_command(name: str, config_file: Path | None) -> None:
    """Remove a forwarder from the configuration (its cursor and dead letters stay on record)."""
    path = forward_config.config_path(config_file)
    forward_config.get(name, path)
    with _root().open() as trail:
        forward_config.write_sink(path, None, name)
        index = _record_change(trail, "forward.sink.remove", name, None)
    _say(f"forwarder {name} removed from {path}; recorded as entry {index}")


@forward_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per forwarder.")
@_config_option
def list_command(as_json: bool, config_file: Path | None) -> None:
    """List the configured forwarders and their options."""
    configs = forward_config.load(config_file)
    for name, config in configs.items():
        table = config.to_table()
        if as_json:
            sys.stdout.buffer.write(orjson.dumps({"name": name, **table}) + b"\n")
        else:
            rest = " ".join(f"{k}={v}" for k, v in table.items() if k not in ("sink", "format"))
            _say(f"{name}  {config.sink}  {config.format}  {rest}")
    if not configs and not as_json:
        _say(f"no forwarders in {forward_config.config_path(config_file)}", err=True)


@forward_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per forwarder.")
@click.option("--dead-letters", "dead", is_flag=True, help="Also list each dead letter: index, entry id, reason.")
@_config_option
def status_command(as_json: bool, dead: bool, config_file: Path | None) -> None:
    """Each forwarder's cursor, lag (entries and seconds), last error and dead letters."""
    configs = forward_config.load(config_file)
    with _root().open() as trail:
        cursors = Cursors(trail.store)
        try:
            rows = status(trail, cursors, configs)
            letters = {name: cursors.dead_letters(name, limit=10_000) if dead else [] for name in configs}
        finally:
            cursors.close()
    for row in rows:
        refused = [{"index": d.index, "entry_id": d.entry_id, "reason": d.reason, "at": d.at}
                   for d in letters[row["name"]]]  # fmt: skip
        if as_json:
            sys.stdout.buffer.write(orjson.dumps({**row, "dead": refused} if dead else row) + b"\n")
            continue
        error = f"  last error: {row['last_error']}" if row["last_error"] else ""
        _say(
            f"{row['name']}  {row['sink']}  delivered {row['position']} of {row['log_size']}  "
            f"lag {row['lag_entries']} entries, {row['lag_seconds']:.1f}s  dead letters {row['dead_letters']}{error}"
        )
        for letter in refused:
            _say(f"  dead letter: entry {letter['index']} ({letter['entry_id']}) at {letter['at']}: {letter['reason']}")


@forward_group.command("run")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--once", is_flag=True, help="Deliver what the log holds now, then stop.")
@click.option("--poll", type=click.FloatRange(0.01, 60), default=0.2, show_default=True,
              help="Seconds between looks at the log when idle.")  # fmt: skip
@_config_option
def run_command(names: tuple[str, ...], once: bool, poll: float, config_file: Path | None) -> None:
    """Deliver to the named forwarders (default: all) until SIGTERM or Ctrl-C.

    On SIGTERM the batch in flight is finished and acknowledged, then the command stops.
    """
    configs = forward_config.load(config_file)
    chosen = list(names) or list(configs)
    if not chosen:
        raise ConfigError(
            f"no forwarders in {forward_config.config_path(config_file)}; add one with `graven forward add`"
        )
    for name in chosen:
        if name not in configs:
            raise ConfigError(f"no forwarder named {name!r} in {forward_config.config_path(config_file)}")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    with _root().open() as trail, _running(trail, [configs[n] for n in chosen]) as forwarders:
        if once:
            for forwarder in forwarders:
                while forwarder.step():
                    pass
            return
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            _say(f"graven: forwarding to {', '.join(chosen)} (SIGTERM stops after the batch in flight)", err=True)
            failures: list[str] = []
            threads = [threading.Thread(target=guarded, args=(f, stop, failures, poll), name=f"forward-{f.name}")
                       for f in forwarders]  # fmt: skip
            for thread in threads:
                thread.start()
            while any(t.is_alive() for t in threads):
                for thread in threads:
                    thread.join(0.2)
            if failures:
                raise ForwardStopped(failures[0])
        finally:
            stop.set()
            for s, handler in previous.items():
                signal.signal(s, handler)


class ForwardStopped(GravenError):
    """A forwarder stopped for a reason a retry cannot mend (a damaged log, a broken configuration)."""


def _report(message: str) -> None:
    _say(f"graven: {message}", err=True)


class _running:
    """Open every chosen forwarder (each checks its sink first), close them all at the end."""

    def __init__(self, trail: Trail, configs: list[forward_config.SinkConfig]) -> None:
        self.trail = trail
        self.configs = configs
        self.cursors: Cursors | None = None
        self.forwarders: list[Forwarder] = []

    def __enter__(self) -> list[Forwarder]:
        self.cursors = Cursors(self.trail.store)
        try:
            for config in self.configs:
                forwarder = Forwarder(self.trail, config, self.cursors, on_error=_report)
                forwarder.open()
                self.forwarders.append(forwarder)
        except BaseException:
            self.__exit__()
            raise
        return self.forwarders

    def __exit__(self, *exc: object) -> None:
        for forwarder in self.forwarders:
            forwarder.close()
        if self.cursors is not None:
            self.cursors.close()


# --- receive ----------------------------------------------------------------------------------


@click.group("receive")
def receive_group() -> None:
    """Check what a receiver stored, with nothing but the log's public key."""


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(path.glob("*.jsonl"), key=_file_order)
        if not found:
            raise ConfigError(f"{path} holds no .jsonl files")
        return found
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    return [path]


_CLOSED = re.compile(r".*-(\d{20})-\d{20}\.jsonl|.*-t(\d{20})\.jsonl")


def _file_order(path: Path) -> tuple[int, int, str]:
    """Closed files in log order (their first index, or the time they were closed), active ones last."""
    match = _CLOSED.fullmatch(path.name)
    if match is None:
        return (1, 0, path.name)
    return (0, int(match.group(1) or match.group(2)), path.name)


def _lines(files: list[Path]) -> Iterator[tuple[bytes, str]]:
    for file in files:
        with file.open("rb") as f:
            for number, line in enumerate(f, 1):
                yield line, f"{file.name} line {number}"


@receive_group.command("verify")
@click.argument("path", type=click.Path(path_type=Path), metavar="PATH")
@click.option("--key", required=True, metavar="KEY", help="The log's verifier key (its text, or a file holding it).")
@click.option("--json", "as_json", is_flag=True, help='Print {"ok", "first_bad_index", "kind", "message", ...}.')
def verify_command(path: Path, key: str, as_json: bool) -> None:
    """Check received entries (a JSONL sink's folder, or a JSON Lines file) against their proofs.

    No gap, no unexplained duplicate, no reordering, every entry inside a signed tree and every
    tree consistent with the one before. Exits 0 when all holds, 1 naming the first bad index.
    """
    verifier = load_verifier(key)
    report = check_lines(_lines(_files(path)), [verifier])
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(report.to_json()) + b"\n")
    elif report.ok:
        _say(f"OK  {report.message}")
    else:
        _say(f"FAILED  {report.message}", err=True)
    sys.exit(0 if report.ok else 1)
