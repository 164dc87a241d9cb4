"""HTTP sinks: signed webhooks and the Splunk HTTP Event Collector (standard library client, kept alive).

Webhook: one POST per entry, in order, with ``Idempotency-Key`` = the entry's id, ``X-Graven-Index``,
``X-Graven-Timestamp`` (Unix seconds) and ``X-Graven-Signature: sha256=HEX``, the HMAC-SHA256 under
the shared secret of ``TIMESTAMP + "." + BODY``; then one POST of the batch's proof record
(``X-Graven-Kind: proof``). A 2xx answer is the acknowledgement; 408, 429, 5xx, a broken connection
or a timeout is retried; any other 4xx is a permanent refusal (a dead letter with the receiver's
answer) and delivery goes on.

HEC: one POST per batch to ``/services/collector/event`` (``Authorization: Splunk TOKEN``), one
event per entry (``time`` = when it happened) plus one for the proof record (sourcetype
``graven:proof``). Only ``200`` with
``{"code": 0}`` acknowledges; with ``ack = true`` the batch counts only once the indexer's ack
is true. A batch refused for one event's data (code 6 with ``invalid-event-number``) dead-letters
that event and sends the rest again; an answer that is not HEC's JSON is retried.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import socket
import ssl
import time
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

from graven.errors import ConfigError
from graven.forward.config import SinkConfig
from graven.forward.sinks import Batch, Refused, Retry

DEFAULT_TIMEOUT = 10.0


class HttpClient:
    """One kept-alive connection to a base URL; any transport failure is a :class:`Retry`."""

    def __init__(self, name: str, url: str, timeout: float, tls_ca: str | None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"forwarder {name}: url must be http(s)://host[:port]/path; got {url!r}")
        self.name = name
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.path = parts.path or "/"
        self.timeout = timeout
        self.context: ssl.SSLContext | None = None
        if self.https:
            try:
                self.context = ssl.create_default_context(cafile=tls_ca)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"forwarder {name}: cannot load tls_ca {tls_ca}: {exc}") from None
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.https:
                self._conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                         context=self.context)  # fmt: skip
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._conn.connect()
            if self._conn.sock is not None:  # headers and body leave at once: no Nagle / delayed-ACK stall
                self._conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self._conn

    def request(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        try:
            conn = self._connection()
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            if response.will_close:
                self.close()
            return response.status, data
        except ssl.SSLCertVerificationError as exc:
            self.close()
            raise Retry(f"{self.host}:{self.port}: TLS certificate not trusted ({exc.verify_message})") from None
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise Retry(f"{self.host}:{self.port}: {type(exc).__name__}: {exc}") from None

    def probe(self, path: str, headers: dict[str, str]) -> int:
        """Reach the receiver once (any HTTP answer will do): ConfigError when it cannot be reached."""
        try:
            status, _ = self.request("GET", path, None, headers)
        except Retry as exc:
            raise ConfigError(f"forwarder {self.name}: cannot reach the receiver: {exc}") from None
        return status

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _answer(data: bytes, limit: int = 300) -> str:
    text = data.decode("utf-8", "replace").strip().replace("\n", " ")
    return text[:limit] or "(empty)"


def permanent(status: int) -> bool:
    """A refusal that no retry will change: 4xx other than 408 (timeout) and 429 (too many)."""
    return 400 <= status < 500 and status not in (408, 429)


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=`` and the hex HMAC-SHA256 of ``timestamp + "." + body`` (what a receiver recomputes)."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookSink:
    def __init__(self, config: SinkConfig) -> None:
        self.config = config
        options = config.options
        self.url = str(options["url"])
        self.client: HttpClient | None = None
        self.secret = b""
        self.content_type = "application/json" if config.format in ("native", "ocsf") else "text/plain"

    def open(self) -> None:
        self.secret = self.config.secret("secret").encode()
        options = self.config.options
        self.client = HttpClient(self.config.name, self.url, float(options.get("timeout", DEFAULT_TIMEOUT)),
                                 options.get("tls_ca"))  # fmt: skip
        self.client.probe(self.client.path, {})

    def _post(self, body: bytes, key: str, headers: dict[str, str]) -> tuple[int, bytes]:
        assert self.client is not None
        timestamp = str(int(time.time()))
        return self.client.request("POST", self.client.path, body, {
            "Content-Type": self.content_type, "Idempotency-Key": key, "X-Graven-Timestamp": timestamp,
            "X-Graven-Signature": signature(self.secret, timestamp, body), **headers,
        })  # fmt: skip

    def send(self, batch: Batch) -> Refused:
        refused = Refused()
        for record in batch.records:
            status, data = self._post(record.line, record.entry_id, {"X-Graven-Index": str(record.index)})
            if 200 <= status < 300:
                continue
            if permanent(status):
                refused.entries.append((record.index, record.entry_id, f"HTTP {status}: {_answer(data)}"))
                continue
            raise Retry(f"entry {record.index}: HTTP {status}: {_answer(data)}")
        if batch.proof_line is not None and batch.proof is not None:
            proof = batch.proof["proof"]
            key = f"proof-{proof['first']}-{proof['end']}-{proof['tree_size']}"
            status, data = self._post(batch.proof_line, key, {"X-Graven-Kind": "proof"})
            if not 200 <= status < 300 and not permanent(status):
                raise Retry(f"proof of {batch.first}..{batch.end - 1}: HTTP {status}: {_answer(data)}")
        return refused

    def tick(self) -> None:
        return None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def _occurred(body: bytes, default: float) -> float:
    """When the entry happened, as HEC's ``time`` (epoch seconds): Splunk indexes events by it."""
    try:
        return datetime.fromisoformat(orjson.loads(body)["occurred_at"]).timestamp()
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return default


class HecSink:
    def __init__(self, config: SinkConfig) -> None:
        self.config = config
        options = config.options
        base = str(options["url"]).rstrip("/")
        self.base_path = urlsplit(base).path
        self.url = base
        self.ack = bool(options.get("ack", False))
        self.channel = str(options.get("channel") or uuid.uuid4())
        self.client: HttpClient | None = None
        self.headers: dict[str, str] = {}
        self.ack_timeout = float(options.get("timeout", DEFAULT_TIMEOUT)) * 3

    def open(self) -> None:
        token = self.config.secret("token")
        self.headers = {"Authorization": f"Splunk {token}", "X-Splunk-Request-Channel": self.channel,
                        "Content-Type": "application/json"}  # fmt: skip
        options = self.config.options
        self.client = HttpClient(self.config.name, self.url, float(options.get("timeout", DEFAULT_TIMEOUT)),
                                 options.get("tls_ca"))  # fmt: skip
        try:  # an empty post: HEC answers "No data" (code 5) to a good token, 401 or 403 to a bad one
            status, _ = self.client.request("POST", f"{self.base_path}/services/collector/event", b"", self.headers)
        except Retry as exc:
            raise ConfigError(f"forwarder {self.config.name}: cannot reach the receiver: {exc}") from None
        if status in (401, 403):
            raise ConfigError(f"forwarder {self.config.name}: the HEC token was refused (HTTP {status})")

    def _event(self, record_time: float, sourcetype: str, event: Any, fields: dict[str, Any]) -> bytes:
        out: dict[str, Any] = {"time": record_time, "source": "graven", "sourcetype": sourcetype, "event": event,
                               "fields": fields}  # fmt: skip
        if self.config.options.get("index"):
            out["index"] = self.config.options["index"]
        return orjson.dumps(out)

    def _events(self, batch: Batch, skip: set[int]) -> tuple[list[int], bytes]:
        """The HEC body, and which entry index each event is (-1 for the proof)."""
        fmt = self.config.format
        sourcetype = str(self.config.options.get("sourcetype") or f"graven:{fmt}")
        order: list[int] = []
        parts: list[bytes] = []
        now = time.time()
        for record in batch.records:
            if record.index in skip:
                continue
            event: Any = orjson.Fragment(record.line) if fmt in ("native", "ocsf") else record.line.decode()
            parts.append(self._event(_occurred(record.body, now), sourcetype, event, {"graven_index": record.index}))
            order.append(record.index)
        if batch.proof_line is not None:
            proof_event = orjson.Fragment(batch.proof_line)
            parts.append(self._event(now, "graven:proof", proof_event, {"graven_first": batch.first,
                                                                        "graven_end": batch.end}))  # fmt: skip
            order.append(-1)
        return order, b"\n".join(parts)

    def send(self, batch: Batch) -> Refused:
        assert self.client is not None
        refused = Refused()
        skip: set[int] = set()
        ids = {r.index: r for r in batch.records}
        while True:
            order, body = self._events(batch, skip)
            if not order:
                return refused
            status, data = self.client.request("POST", f"{self.base_path}/services/collector/event", body, self.headers)
            try:
                answer = orjson.loads(data)
                code = answer.get("code") if isinstance(answer, dict) else None
            except orjson.JSONDecodeError:
                answer, code = None, None
            if status == 200 and code == 0:
                if self.ack:
                    self._await_ack(answer)
                return refused
            if status == 400 and code == 6 and isinstance(answer.get("invalid-event-number"), int):
                position = answer["invalid-event-number"]
                if 0 <= position < len(order) and order[position] >= 0:
                    index = order[position]
                    refused.entries.append((index, ids[index].entry_id, f"HTTP 400: {_answer(data)}"))
                    skip.add(index)
                    continue
            if permanent(status) and status not in (401, 403) and code is not None:
                refused.entries += [(i, ids[i].entry_id, f"HTTP {status}: {_answer(data)}") for i in order if i >= 0]
                return refused
            raise Retry(f"HEC answered HTTP {status}: {_answer(data)}")

    def _await_ack(self, answer: Any) -> None:
        assert self.client is not None
        ack_id = answer.get("ackId")
        if not isinstance(ack_id, int):
            raise Retry(f"HEC acknowledged without an ackId though ack is on: {answer}")
        body = orjson.dumps({"acks": [ack_id]})
        deadline = time.monotonic() + self.ack_timeout
        delay = 0.05
        while time.monotonic() < deadline:
            status, data = self.client.request("POST", f"{self.base_path}/services/collector/ack", body, self.headers)
            try:
                acks = orjson.loads(data).get("acks") if status == 200 else None
            except (orjson.JSONDecodeError, AttributeError):
                acks = None
            if not isinstance(acks, dict):
                raise Retry(f"HEC ack answered HTTP {status}: {_answer(data)}")
            if acks.get(str(ack_id)) is True:
                return
            time.sleep(delay)
            delay = min(1.0, delay * 2)
        raise Retry(f"HEC did not acknowledge ackId {ack_id} within {self.ack_timeout:.0f}s")

    def tick(self) -> None:
        return None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
