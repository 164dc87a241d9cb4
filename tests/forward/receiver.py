"""A real HTTP receiver for the tests: Splunk HEC and signed webhooks, tokens and HMAC checked."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

TOKEN = "hec-token-0123"
SECRET = "webhook-secret-4567"


class Receiver:
    """Start with :meth:`start`; stop and start again (same port) to play a receiver going down."""

    def __init__(self) -> None:
        self.events: list[Any] = []  # HEC events and webhook bodies, in the order accepted
        self.keys: list[str] = []  # webhook idempotency keys accepted
        self.refuse: set[int] = set()  # entry indices answered with a permanent refusal
        self.garbage = False
        self.bad_auth = 0
        self.requests = 0
        self.port = 0
        self.acks = 0
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                receiver._sockets.append(self.connection)

            def answer(self, status: int, body: Any) -> None:
                data = body if isinstance(body, bytes) else orjson.dumps(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self.answer(200, {"text": "HEC is healthy", "code": 17})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.requests += 1
                    if self.path == "/hook":
                        self.hook(body)
                    elif self.path == "/services/collector/event":
                        self.hec(body)
                    elif self.path == "/services/collector/ack":
                        acks = orjson.loads(body)["acks"]
                        self.answer(200, {"acks": {str(a): True for a in acks}})
                    else:
                        self.answer(404, {"text": "no such path", "code": 404})

            def hook(self, body: bytes) -> None:
                if receiver.garbage:
                    self.wfile.write(b"this is not HTTP\r\n\r\n")
                    self.close_connection = True
                    return
                stamp = self.headers.get("X-Graven-Timestamp", "")
                mac = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256)
                expected = "sha256=" + mac.hexdigest()
                if not hmac.compare_digest(expected, self.headers.get("X-Graven-Signature", "")):
                    receiver.bad_auth += 1
                    self.answer(401, {"error": "bad signature"})
                    return
                index = self.headers.get("X-Graven-Index")
                if index is not None and int(index) in receiver.refuse:
                    self.answer(422, {"error": f"event {index} is not acceptable"})
                    return
                key = self.headers["Idempotency-Key"]
                if key not in receiver.keys:  # a resend is recognised by its key
                    receiver.keys.append(key)
                    receiver.events.append(orjson.loads(body))
                self.answer(202, {"ok": True})

            def hec(self, body: bytes) -> None:
                if self.headers.get("Authorization") != f"Splunk {TOKEN}":
                    receiver.bad_auth += 1
                    self.answer(401, {"text": "Invalid authorization", "code": 3})
                    return
                if receiver.garbage:
                    self.answer(200, b"<html>proxy error</html>")
                    return
                events = [orjson.loads(line) for line in body.split(b"\n") if line.strip()]
                if not events:
                    self.answer(400, {"text": "No data", "code": 5})
                    return
                for number, event in enumerate(events):
                    if event.get("fields", {}).get("graven_index") in receiver.refuse:
                        self.answer(400, {"text": "Invalid data format", "code": 6, "invalid-event-number": number})
                        return
                receiver.events += events
                receiver.acks += 1
                self.answer(200, {"text": "Success", "code": 0, "ackId": receiver.acks})

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for conn in self._sockets:  # kept-alive connections go down with the receiver
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._sockets.clear()
