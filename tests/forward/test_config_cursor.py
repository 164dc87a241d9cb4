"""graven.toml parsing and writing; cursors and dead letters on SQLite and on PostgreSQL."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

import graven
from graven.errors import ConfigError, StoreError
from graven.forward import config as fc
from graven.forward.cursor import Cursors
from graven.trail import Trail
from tests.pgserver import Server


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"sink": "kafka"}, "sink must be one of"),
        ({"sink": "jsonl"}, "a jsonl sink needs path"),
        (
            {"sink": "jsonl", "path": "x", "format": "xml"},
            "format must be one of native, ocsf, cef, rfc5424; got 'xml'",
        ),
        ({"sink": "jsonl", "path": "x", "colour": "red"}, "unknown option 'colour'"),
        ({"sink": "jsonl", "path": "x", "batch": 0}, "batch must be from 1 to 10000; got 0"),
        ({"sink": "jsonl", "path": "x", "batch": "5"}, "batch must be an integer"),
        ({"sink": "hec", "url": "http://h", "token": "abc"}, "token must not be written in graven.toml"),
        ({"sink": "hec", "url": "http://h"}, "needs token_env"),
        ({"sink": "webhook", "url": "ftp://h", "secret_env": "S"}, "url must start with http"),
        ({"sink": "syslog", "host": "h", "port": 514, "transport": "carrier-pigeon"}, "transport must be udp, tcp"),
        ({"sink": "syslog", "host": "h", "port": 70000}, "port must be from 1 to 65535"),
    ],
)
def test_bad_configuration_is_refused_naming_the_option(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=r"^forwarder siem: ") as caught:
        fc.parse_sink("siem", table)
    assert message in str(caught.value)


def test_a_bad_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="the name must be"):
        fc.parse_sink("Bad Name", {"sink": "stdout"})


def test_secrets_come_from_the_environment_or_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = fc.parse_sink("hec", {"sink": "hec", "url": "http://h", "token_env": "HEC_TOKEN_TEST"})
    monkeypatch.delenv("HEC_TOKEN_TEST", raising=False)
    with pytest.raises(ConfigError, match=r"token_env names \$HEC_TOKEN_TEST, which is not set"):
        parsed.secret("token")
    monkeypatch.setenv("HEC_TOKEN_TEST", "t0k3n")
    assert "t0k3n" == parsed.secret("token")
    (tmp_path / "tok").write_text("from-file\n")
    from_file = fc.parse_sink("hec", {"sink": "hec", "url": "http://h", "token_file": str(tmp_path / "tok")})
    assert "from-file" == from_file.secret("token")


def test_writing_back_keeps_other_tables_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "graven.toml"
    path.write_text('title = "ours"\n[other]\nkeep = [1, 2]\n[forward.old]\nsink = "stdout"\n')
    tricky = fc.parse_sink("siem", {"sink": "jsonl", "path": 'a "quoted"\\path\n', "max_seconds": 1.5})
    fc.write_sink(path, tricky, "siem")
    document = tomllib.loads(path.read_text())
    assert "ours" == document["title"]
    assert [1, 2] == document["other"]["keep"]
    assert 'a "quoted"\\path\n' == document["forward"]["siem"]["path"]
    assert fc.load(path)["siem"] == tricky
    fc.write_sink(path, None, "old")
    assert ["siem"] == list(fc.load(path))


@pytest.fixture(params=["sqlite", "postgres"])
def any_trail(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Trail]:
    if request.param == "sqlite":
        with graven.init(tmp_path / "t.db", signing_key=tmp_path / "k") as trail:
            yield trail
        return
    pg: Server = request.getfixturevalue("pg")
    with graven.init(pg.schema_url("fwd"), signing_key=tmp_path / "k") as trail:
        yield trail


def test_cursors_and_dead_letters_persist_beside_the_log(any_trail: Trail) -> None:
    cursors = Cursors(any_trail.store)
    assert 0 == cursors.get("siem").position
    cursors.fail("siem", "connection refused")
    assert "connection refused" == cursors.get("siem").last_error
    cursors.advance("siem", 5, 5, [(3, "id-3", "HTTP 400: bad event")])
    cursors.advance("siem", 9, 9, [(7, "id-7", "rejected")])
    cursors.close()
    again = Cursors(any_trail.store)  # a new connection sees what was committed
    cursor = again.get("siem")
    assert (9, 9, None, 2) == (cursor.position, cursor.proof_size, cursor.last_error, cursor.dead)
    assert [(3, "id-3", "HTTP 400: bad event"), (7, "id-7", "rejected")] == [
        (d.index, d.entry_id, d.reason) for d in again.dead_letters("siem")
    ]
    with pytest.raises(StoreError, match="cannot move back"):
        again.advance("siem", 4, 9)
    again.reset("siem")
    assert 0 == again.get("siem").position
    again.close()
    report = any_trail.verify()
    assert report.ok, report.message  # the cursor tables are outside what verification covers
