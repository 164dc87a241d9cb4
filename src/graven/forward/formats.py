"""Formats a forwarder writes, pure and I/O-free: each turns one stored entry into one record.

Every format is built from the entry *as stored* (personal values stay sealed, so forgetting a
subject also holds for the receiver's copy) and carries the entry's index and leaf hash
(SHA-256 of 0x00 followed by the stored bytes, hex), so a receiver can tie it to the signed tree.

* ``native``: the entry as ``graven log --json`` prints it (``index`` first, then the stored
  fields) plus ``leaf_hash``. Removing ``index`` and ``leaf_hash`` and encoding the rest with
  RFC 8785 gives back the leaf bytes exactly.
* ``ocsf``: one OCSF 1.1 event (JSON): Authentication (3002) for ``session.*`` and ``*.login``,
  Account Change (3001) for ``user.*`` and ``account.*``, API Activity (6003) for the rest. What
  OCSF has no field for (changes, reason, tenant, context, metadata) goes under
  ``unmapped.graven``, with the index and leaf hash.
* ``cef``: one ArcSight CEF line; ``|`` and ``\\`` escaped in the header, ``\\``, ``=`` and line
  breaks in extension values.
* ``rfc5424``: one RFC 5424 syslog message whose structured data
  ``[graven@32473 index="..." leaf="..." ...]`` escapes ``"``, ``\\`` and ``]`` in values, and
  whose MSG is the native record.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import orjson

Encoder = Callable[[int, bytes, bytes], bytes]


def native(index: int, body: bytes, leaf_hash: bytes) -> bytes:
    """``{"index": N, <stored fields>, "leaf_hash": "<hex>"}`` spliced from the stored JSON."""
    return b'{"index":%d,%s,"leaf_hash":"%s"}' % (index, body[1:-1], leaf_hash.hex().encode())


def _ms(text: str | None) -> int | None:
    """An entry's stored UTC time as epoch milliseconds."""
    if not text:
        return None
    return int(datetime.fromisoformat(text).timestamp() * 1000)


# --- OCSF 1.1 ----------------------------------------------------------------------------------

OCSF_VERSION = "1.1.0"
PRODUCT = {"name": "Graven", "vendor_name": "Graven", "version": "0.1.0"}
_API_ACTIVITY = {"create": 1, "add": 1, "record": 1, "read": 2, "view": 2, "get": 2, "list": 2, "export": 2,
                 "update": 3, "change": 3, "edit": 3, "set": 3, "delete": 4, "remove": 4, "destroy": 4}  # fmt: skip
_AUTH_ACTIVITY = {"login": 1, "logon": 1, "signin": 1, "logout": 2, "logoff": 2, "signout": 2}
_ACCOUNT_ACTIVITY = {"create": 1, "enable": 2, "password.change": 3, "password.reset": 4, "disable": 5,
                     "delete": 6, "lock": 9}  # fmt: skip
_SEVERITY = {"success": 1, "failure": 2, "denied": 3}  # Informational, Low, Medium
_STATUS = {"success": (1, "Success"), "failure": (2, "Failure"), "denied": (2, "Failure")}


def ocsf_class(action: str) -> tuple[int, int, int]:
    """``(category_uid, class_uid, activity_id)`` for an action, as the mapping table says."""
    noun, _, verb = action.partition(".")
    last = action.rsplit(".", 1)[-1]
    if noun == "session" or last == "login" or last == "logout":
        return 3, 3002, _AUTH_ACTIVITY.get(last, 99)
    if noun in ("user", "account"):
        return 3, 3001, _ACCOUNT_ACTIVITY.get(verb, _ACCOUNT_ACTIVITY.get(last, 99))
    return 6, 6003, _API_ACTIVITY.get(last, 99)


def _ocsf_user(who: Mapping[str, Any]) -> dict[str, Any]:
    user: dict[str, Any] = {"uid": str(who.get("id", "")), "type": str(who.get("type", "user"))}
    if who.get("name"):
        user["name"] = who["name"]
    return user


def ocsf_event(index: int, entry: Mapping[str, Any], leaf_hash: bytes) -> dict[str, Any]:
    """One entry as an OCSF 1.1 event (see the mapping table in the README)."""
    action, outcome = str(entry["action"]), str(entry["outcome"])
    category, class_uid, activity = ocsf_class(action)
    actor: Mapping[str, Any] = entry.get("actor") or {}
    status_id, status = _STATUS.get(outcome, (0, "Unknown"))
    event: dict[str, Any] = {
        "category_uid": category, "class_uid": class_uid, "activity_id": activity,
        "type_uid": class_uid * 100 + activity, "severity_id": _SEVERITY.get(outcome, 0),
        "time": _ms(entry.get("occurred_at")), "status_id": status_id, "status": status,
        "message": f"{action} {outcome}",
        "metadata": {"version": OCSF_VERSION, "product": PRODUCT, "uid": entry.get("id"), "sequence": index,
                     "logged_time": _ms(entry.get("recorded_at"))},
        "actor": {"user": _ocsf_user(actor)},
    }  # fmt: skip
    if outcome != "success":
        event["status_detail"] = f"{outcome}: {entry['reason']}" if entry.get("reason") else outcome
    if actor.get("session"):
        event["actor"]["session"] = {"uid": actor["session"]}
    endpoint: dict[str, Any] = {"ip": actor["ip"]} if actor.get("ip") else {}
    endpoint.setdefault("svc_name", str(entry.get("source") or "graven"))
    event["src_endpoint"] = endpoint
    if actor.get("user_agent"):
        event["http_request"] = {"user_agent": actor["user_agent"]}
    targets = list(entry.get("targets") or [])
    resources = [{"uid": t.get("id"), "type": t.get("type"), **({"name": t["name"]} if t.get("name") else {})}
                 for t in targets]  # fmt: skip
    if class_uid == 6003:
        event["api"] = {"operation": action, "service": {"name": str(entry.get("source") or "graven")}}
        if resources:
            event["resources"] = resources
    else:
        users = [t for t in targets if t.get("type") in ("user", "account")]
        event["user"] = _ocsf_user({"id": users[0].get("id"), "type": "user", "name": users[0].get("name")}
                                   if users else actor)  # fmt: skip
        if class_uid == 3002:  # the service authenticated to (OCSF asks for it or a dst_endpoint)
            event["service"] = {"name": str(entry.get("source") or "graven")}
    context = entry.get("context") or {}
    if context.get("request_id") or context.get("trace_id"):
        event["metadata"]["correlation_uid"] = str(context.get("trace_id") or context.get("request_id"))
    unmapped = {"index": index, "leaf_hash": leaf_hash.hex()}
    for key in ("changes", "reason", "tenant", "context", "metadata", "source"):
        if entry.get(key) not in (None, [], {}):
            unmapped[key] = entry[key]
    if targets and class_uid != 6003:
        unmapped["targets"] = targets
    event["unmapped"] = {"graven": unmapped}
    return event


def ocsf(index: int, body: bytes, leaf_hash: bytes) -> bytes:
    return orjson.dumps(ocsf_event(index, orjson.loads(body), leaf_hash))


# --- CEF ------------------------------------------------------------------------------------------

_CEF_SEVERITY = {"success": 3, "failure": 5, "denied": 7}


def cef_header(value: str) -> str:
    """A CEF header field: backslash and pipe escaped; line breaks (not allowed there) become spaces."""
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def cef_value(value: str) -> str:
    """A CEF extension value: backslash, equals sign and line breaks escaped."""
    return (value.replace("\\", "\\\\").replace("=", "\\=").replace("\r\n", "\\n")
            .replace("\n", "\\n").replace("\r", "\\r"))  # fmt: skip


def cef(index: int, body: bytes, leaf_hash: bytes) -> bytes:
    entry = orjson.loads(body)
    action, outcome = str(entry["action"]), str(entry["outcome"])
    actor = entry.get("actor") or {}
    targets = entry.get("targets") or []
    ext: list[tuple[str, Any]] = [
        ("rt", _ms(entry.get("recorded_at"))), ("start", _ms(entry.get("occurred_at"))),
        ("externalId", entry.get("id")), ("act", action), ("outcome", outcome),
        ("suser", actor.get("name") or actor.get("id")), ("suid", actor.get("id")), ("src", actor.get("ip")),
        ("requestClientApplication", actor.get("user_agent")), ("reason", entry.get("reason")),
    ]  # fmt: skip
    custom = [
        ("cs1", "leaf_hash", leaf_hash.hex()), ("cn1", "index", index),
        ("cs2", "targets", ",".join(f"{t.get('type')}:{t.get('id')}" for t in targets)),
        ("cs3", "tenant", entry.get("tenant")),
        ("cs4", "changes", orjson.dumps(entry["changes"]).decode() if entry.get("changes") else None),
    ]  # fmt: skip
    for key, label, value in custom:
        if value not in (None, ""):
            ext += [(f"{key}Label", label), (key, value)]
    extension = " ".join(f"{k}={cef_value(str(v))}" for k, v in ext if v not in (None, ""))
    header = "|".join(cef_header(x) for x in ("Graven", "Graven", PRODUCT["version"], action, f"{action} {outcome}"))
    return f"CEF:0|{header}|{_CEF_SEVERITY.get(outcome, 5)}|{extension}".encode()


# --- RFC 5424 -------------------------------------------------------------------------------------

FACILITY = 13  # log audit
_SYSLOG_SEVERITY = {"success": 6, "failure": 5, "denied": 4}  # informational, notice, warning
SD_ID = "graven@32473"
_NOT_PRINTABLE = re.compile(r"[^\x21-\x7e]")


def sd_value(value: str) -> str:
    """An RFC 5424 PARAM-VALUE: '"', '\\' and ']' escaped with a backslash (section 6.3.3)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def header_token(value: str, limit: int) -> str:
    """An RFC 5424 header field (APP-NAME, MSGID, HOSTNAME): printable US-ASCII, or "-"."""
    return _NOT_PRINTABLE.sub("_", value)[:limit] or "-"


def syslog_message(
    severity: int, timestamp: str, msgid: str, params: Mapping[str, Any], message: bytes, *,
    app_name: str = "graven", hostname: str = "-",
) -> bytes:  # fmt: skip
    """``<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID [graven@32473 ...] MSG``."""
    sd = "".join(f' {k}="{sd_value(str(v))}"' for k, v in params.items() if v is not None)
    head = (f"<{FACILITY * 8 + severity}>1 {timestamp or '-'} {header_token(hostname, 255)} "
            f"{header_token(app_name, 48)} - {header_token(msgid, 32)} [{SD_ID}{sd}] ")  # fmt: skip
    return head.encode() + message


def rfc5424(index: int, body: bytes, leaf_hash: bytes, *, app_name: str = "graven", hostname: str = "-") -> bytes:
    entry = orjson.loads(body)
    actor = entry.get("actor") or {}
    params = {"index": index, "leaf": leaf_hash.hex(), "id": entry.get("id"), "outcome": entry.get("outcome"),
              "actor": actor.get("id")}  # fmt: skip
    return syslog_message(
        _SYSLOG_SEVERITY.get(str(entry.get("outcome")), 5), str(entry.get("recorded_at") or "-"),
        str(entry.get("action")), params, native(index, body, leaf_hash), app_name=app_name, hostname=hostname,
    )  # fmt: skip


def encoder(name: str, *, app_name: str = "graven", hostname: str = "-") -> Encoder:
    """The encoder of a format name (checked by the configuration)."""
    if name == "native":
        return native
    if name == "ocsf":
        return ocsf
    if name == "cef":
        return cef
    if name == "rfc5424":
        return lambda index, body, leaf: rfc5424(index, body, leaf, app_name=app_name, hostname=hostname)
    raise ValueError(f"unknown format {name!r}")
