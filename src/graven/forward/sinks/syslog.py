"""The syslog sink: RFC 5424 messages over UDP (RFC 5426), TCP with octet counting (RFC 6587) or
TLS (RFC 5425, the server's certificate checked against ``tls_ca`` or the system's CAs).

Every message carries ``[graven@32473 index="..." leaf="..."]``; with ``format = "rfc5424"`` its
MSG is the native record, with another format the formatted record. The batch's proof record
follows as one message with MSGID ``graven.proof``. Syslog has no acknowledgement: over TCP and
TLS a batch counts as delivered once the kernel took all of it (a broken connection is retried
from the batch's start); over UDP once it was sent, so UDP may lose messages and only suits
receivers that are checked with ``graven receive verify``.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from datetime import UTC, datetime

from graven.errors import ConfigError
from graven.forward.config import SinkConfig
from graven.forward.formats import syslog_message
from graven.forward.sinks import Batch, Refused, Retry

DEFAULT_TIMEOUT = 10.0
MAX_UDP = 65_000


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def frame(message: bytes) -> bytes:
    """RFC 6587 octet counting: ``LENGTH SP MESSAGE``."""
    return b"%d %s" % (len(message), message)


class SyslogSink:
    def __init__(self, config: SinkConfig) -> None:
        self.config = config
        options = config.options
        self.host = str(options["host"])
        self.port = int(options["port"])
        self.transport = str(options.get("transport", "tcp"))
        self.timeout = float(options.get("timeout", DEFAULT_TIMEOUT))
        self.app_name = str(options.get("app_name", "graven"))
        self.hostname = str(options.get("hostname", "-"))
        self.context: ssl.SSLContext | None = None
        if self.transport == "tls":
            try:
                self.context = ssl.create_default_context(cafile=options.get("tls_ca"))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"forwarder {config.name}: cannot load tls_ca {options.get('tls_ca')}: {exc}"
                ) from None
        self._sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        where = f"{self.host}:{self.port}"
        try:
            if self.transport == "udp":
                family, kind, proto, _, address = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0]
                sock = socket.socket(family, kind, proto)
                sock.connect(address)
            else:
                sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
                if self.context is not None:
                    sock = self.context.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(self.timeout)
        except ssl.SSLCertVerificationError as exc:
            raise Retry(f"{where}: TLS certificate not trusted ({exc.verify_message})") from None
        except OSError as exc:
            raise Retry(f"{where} ({self.transport}): {exc.strerror or exc}") from None
        self._sock = sock
        return sock

    def open(self) -> None:
        try:
            self._connect()
        except Retry as exc:
            raise ConfigError(f"forwarder {self.config.name}: cannot reach the syslog receiver: {exc}") from None

    def _messages(self, batch: Batch) -> list[bytes]:
        out = []
        for record in batch.records:
            if self.config.format == "rfc5424":
                out.append(record.line)
            else:
                params = {"index": record.index, "leaf": record.leaf_hash.hex()}
                out.append(syslog_message(6, _now(), "graven.entry", params, record.line,
                                          app_name=self.app_name, hostname=self.hostname))  # fmt: skip
        if batch.proof_line is not None:
            params = {"first": batch.first, "end": batch.end}
            out.append(syslog_message(6, _now(), "graven.proof", params, batch.proof_line,
                                      app_name=self.app_name, hostname=self.hostname))  # fmt: skip
        return out

    def send(self, batch: Batch) -> Refused:
        messages = self._messages(batch)
        sock = self._connect()
        try:
            if self.transport == "udp":
                refused = Refused()
                for record_message, index in zip(messages, [r.index for r in batch.records] + [-1], strict=False):
                    if len(record_message) > MAX_UDP:
                        if index >= 0:
                            entry_id = next(r.entry_id for r in batch.records if r.index == index)
                            refused.entries.append((index, entry_id, f"{len(record_message)} bytes: too large for UDP"))
                        continue
                    sock.send(record_message)
                return refused
            sock.sendall(b"".join(frame(m) for m in messages))
        except OSError as exc:
            self.close()
            raise Retry(f"{self.host}:{self.port} ({self.transport}): {exc.strerror or exc}") from None
        return Refused()

    def tick(self) -> None:
        return None

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
