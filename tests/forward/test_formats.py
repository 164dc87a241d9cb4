"""OCSF, CEF and RFC 5424 records: the mapping, the required fields, and hostile values escaped
so that a receiver's parser gives back exactly what was recorded."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from graven.core import merkle
from graven.forward.formats import cef, native, ocsf, rfc5424
from graven.forward.proofs import leaf_of
from graven.trail import Trail

HOSTILE = 'Eve "the | pipe" \\ back=slash ] bracket\nsecond line'
HOSTILE_ID = 'Eve "the | pipe" \\ back=slash ] bracket'  # identifiers refuse control characters

# What the OCSF schema requires of every event, of each class used, and its at-least-one constraints.
BASE_REQUIRED = ("activity_id", "category_uid", "class_uid", "metadata", "severity_id", "time", "type_uid")
CLASS_REQUIRED = {6003: ("actor", "api", "src_endpoint"), 3002: ("user",), 3001: ("user",)}
CLASS_AT_LEAST_ONE = {3002: ("service", "dst_endpoint")}
ENDPOINT_AT_LEAST_ONE = ("ip", "uid", "name", "hostname", "svc_name", "instance_uid", "interface_uid", "interface_name")
USER_AT_LEAST_ONE = ("account", "name", "uid")


def stored(trail: Trail, **event: Any) -> tuple[int, bytes, bytes]:
    index = trail.record({"actor": {"type": "user", "id": "u-1"}, **event})
    body = trail.store.entry(index)
    assert body is not None
    return index, body, merkle.leaf_hash(body)


def test_native_is_the_log_json_plus_the_leaf_hash(trail: Trail) -> None:
    index, body, leaf = stored(trail, action="doc.read", reason=HOSTILE)
    record = orjson.loads(native(index, body, leaf))
    assert {**trail.get(index).to_json(), "leaf_hash": leaf.hex()} == record
    assert body == leaf_of(record)  # the receiver rebuilds the leaf exactly


@pytest.mark.parametrize(
    ("action", "class_uid", "activity"),
    [
        ("session.login", 3002, 1), ("session.logout", 3002, 2), ("admin.login", 3002, 1),
        ("session.refresh", 3002, 99),
        ("user.create", 3001, 1), ("user.password.change", 3001, 3), ("account.delete", 3001, 6),
        ("user.lock", 3001, 9), ("document.read", 6003, 2), ("invoice.update", 6003, 3),
        ("file.delete", 6003, 4), ("role.grant", 6003, 99),
    ],
)  # fmt: skip
def test_ocsf_classes_and_required_fields(trail: Trail, action: str, class_uid: int, activity: int) -> None:
    index, body, leaf = stored(
        trail, action=action, outcome="denied", reason="no permission",
        actor={"type": "user", "id": "u-1", "name": "Ann", "ip": "203.0.113.9", "user_agent": "curl/8",
               "session": "s-1"},
        targets=[{"type": "user", "id": "u-2"}], changes=[{"field": "email", "old": "a@x", "new": "b@x"}],
    )  # fmt: skip
    event = orjson.loads(ocsf(index, body, leaf))
    for name in (*BASE_REQUIRED, *CLASS_REQUIRED[class_uid]):
        assert event.get(name) not in (None, "", {}), name
    if class_uid in CLASS_AT_LEAST_ONE:
        assert any(event.get(name) for name in CLASS_AT_LEAST_ONE[class_uid])
    assert any(event["src_endpoint"].get(name) for name in ENDPOINT_AT_LEAST_ONE)
    for user in (event.get("user"), event["actor"]["user"]):
        assert user is None or any(user.get(name) for name in USER_AT_LEAST_ONE)
    assert event["metadata"]["product"]["name"]
    assert event["metadata"]["version"]
    assert (class_uid, activity, class_uid * 100 + activity) == (event["class_uid"], event["activity_id"],
                                                                 event["type_uid"])  # fmt: skip
    assert {"name", "vendor_name", "version"} <= event["metadata"]["product"].keys()
    assert event["metadata"]["version"].startswith("1.")
    assert (2, "Failure", "denied: no permission") == (event["status_id"], event["status"], event["status_detail"])
    assert {"uid": "u-1", "type": "user", "name": "Ann"} == event["actor"]["user"]
    assert "203.0.113.9" == event["src_endpoint"]["ip"]
    assert "curl/8" == event["http_request"]["user_agent"]
    graven = event["unmapped"]["graven"]
    assert (index, leaf.hex()) == (graven["index"], graven["leaf_hash"])
    assert [{"field": "email", "old": "a@x", "new": "b@x"}] == graven["changes"]
    if class_uid == 6003:
        assert action == event["api"]["operation"]
        assert [{"uid": "u-2", "type": "user"}] == event["resources"]
    else:
        assert "u-2" == event["user"]["uid"]  # the account acted upon


def test_ocsf_without_ip_still_names_a_source_endpoint(trail: Trail) -> None:
    index, body, leaf = stored(trail, action="report.export", source="job")
    event = orjson.loads(ocsf(index, body, leaf))
    assert {"svc_name": "job"} == event["src_endpoint"]
    assert (1, "Success", 1) == (event["status_id"], event["status"], event["severity_id"])


def _cef_split(line: str) -> tuple[list[str], dict[str, str]]:
    parts = re.split(r"(?<!\\)\|", line, maxsplit=7)
    header = [re.sub(r"\\([\\|])", r"\1", p) for p in parts[:7]]
    pairs = re.findall(r"(\w+)=((?:[^\\=]|\\.)*?)(?= \w+=|$)", parts[7])
    unescape = {"\\\\": "\\", "\\=": "=", "\\n": "\n", "\\r": "\r"}
    return header, {k: re.sub(r"\\[\\=nr]", lambda m: unescape[m.group(0)], v) for k, v in pairs}


def test_cef_escapes_hostile_values(trail: Trail) -> None:
    index, body, leaf = stored(
        trail, action="door.open", outcome="failure", reason=HOSTILE,
        actor={"type": "user", "id": "id|with=pipe\\", "name": HOSTILE},
    )  # fmt: skip
    line = cef(index, body, leaf).decode()
    assert "\n" not in line
    header, ext = _cef_split(line)
    assert ["CEF:0", "Graven", "Graven", "0.1.0", "door.open", "door.open failure", "5"] == header
    assert HOSTILE == ext["reason"]
    assert HOSTILE == ext["suser"]
    assert "id|with=pipe\\" == ext["suid"]
    assert (str(index), leaf.hex()) == (ext["cn1"], ext["cs1"])
    assert "cs3Label" not in ext  # no tenant, no label without its value
    assert "cs4Label" not in ext


def _sd_params(message: str) -> tuple[dict[str, str], str]:
    match = re.match(r"<(\d+)>1 (\S+) (\S+) (\S+) (\S+) (\S+) \[graven@32473((?: \w+=\"(?:[^\"\\\]]|\\.)*\")*)\] ",
                     message)  # fmt: skip
    assert match is not None, message
    params = dict(re.findall(r'(\w+)="((?:[^"\\\]]|\\.)*)"', match.group(7)))
    return {k: re.sub(r"\\(.)", r"\1", v) for k, v in params.items()}, message[match.end() :]


def test_rfc5424_structured_data_escapes_hostile_values(trail: Trail) -> None:
    index, body, leaf = stored(trail, action="door.open", outcome="denied", actor={"type": "user", "id": HOSTILE_ID})
    message = rfc5424(index, body, leaf, hostname="host with space", app_name="gräven").decode()
    assert message.startswith("<108>1 ")  # facility 13 (log audit), severity 4 (warning) for a denial
    params, msg = _sd_params(message)
    assert {"index": str(index), "leaf": leaf.hex(), "actor": HOSTILE_ID, "outcome": "denied"}.items() <= params.items()
    assert " host_with_space gr_ven - door.open " in message
    assert orjson.loads(msg) == orjson.loads(native(index, body, leaf))
