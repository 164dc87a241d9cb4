"""The syslog sink against a real rsyslogd on private ports: UDP, TCP with octet counting and TLS;
what rsyslog wrote passes ``graven receive verify``; a wrong certificate is refused at start."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from graven.errors import ConfigError
from graven.forward.config import SinkConfig, parse_sink
from graven.forward.cursor import Cursors
from graven.forward.proofs import check_lines, syslog_payload
from graven.forward.runner import Forwarder
from graven.forward.sinks.syslog import SyslogSink
from graven.trail import Trail
from tests.forward.helpers import fill
from tests.forward.rsyslog import Rsyslog, make_certificates, start_rsyslog


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rsyslog]:
    yield from start_rsyslog(tmp_path_factory.mktemp("rsyslog"))


def syslog(rsyslog: Rsyslog, transport: str, **options: object) -> SinkConfig:
    port = rsyslog.tls_port if transport == "tls" else rsyslog.port
    table = {"sink": "syslog", "host": "127.0.0.1", "port": port, "transport": transport,
             "app_name": f"t{secrets.token_hex(4)}", **options}  # fmt: skip
    if transport == "tls":
        table.setdefault("tls_ca", str(rsyslog.ca))
    return parse_sink("syslog", table)


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
@pytest.mark.parametrize("fmt", ["rfc5424", "native"])
def test_rsyslog_receives_every_entry_and_its_proofs(trail: Trail, rsyslog: Rsyslog, transport: str, fmt: str) -> None:
    fill(trail, 30)
    config = syslog(rsyslog, transport, batch=8, format=fmt)
    forwarder = Forwarder(trail, config, Cursors(trail.store))
    forwarder.open()
    while forwarder.step():
        pass
    forwarder.close()
    lines = rsyslog.lines(str(config.options["app_name"]), 30 + 4)
    assert 34 == len(lines)  # 30 entries and 4 proofs
    assert all(b"[graven@32473 " in line for line in lines)
    assert trail.signer is not None
    report = check_lines(((line, f"line {n}") for n, line in enumerate(lines, 1)), [trail.signer.verifier()])
    assert report.ok, report.message
    assert (0, 30) == (report.first, report.end)


def test_messages_with_hostile_values_survive_rsyslog(trail: Trail, rsyslog: Rsyslog) -> None:
    hostile = 'x"] [fake@1 a="b"] \\ ]'
    trail.record({"action": "door.open", "actor": {"type": "user", "id": hostile}, "reason": hostile})
    config = syslog(rsyslog, "tcp")
    forwarder = Forwarder(trail, config, Cursors(trail.store))
    forwarder.open()
    forwarder.step()
    forwarder.close()
    (entry, _proof) = rsyslog.lines(str(config.options["app_name"]), 2)
    assert b'actor="x\\"\\] [fake@1 a=\\"b\\"\\] \\\\ \\]"' in entry
    payload = syslog_payload(entry)
    assert payload is not None
    assert payload.startswith(b'{"index":0,')


def test_a_certificate_from_another_ca_is_refused_at_start(rsyslog: Rsyslog, tmp_path: Path) -> None:
    other_ca, _, _ = make_certificates(tmp_path)
    sink = SyslogSink(syslog(rsyslog, "tls", tls_ca=str(other_ca)))
    with pytest.raises(ConfigError, match="TLS certificate not trusted"):
        sink.open()


def test_an_unreachable_receiver_is_refused_at_start() -> None:
    config = parse_sink("s", {"sink": "syslog", "host": "127.0.0.1", "port": 9, "transport": "tcp"})
    with pytest.raises(ConfigError, match="cannot reach the syslog receiver"):
        SyslogSink(config).open()
