"""The NATS JetStream sink (``pip install 'graven[forward]'`` brings nats-py).

At start the stream is created if missing, with ``deny_delete`` and ``deny_purge`` so that nobody
holding the stream's credentials can remove what was delivered; an existing stream that allows
either is refused. Each entry is published with ``Nats-Msg-Id`` = its id, so the stream drops a
resend within its duplicate window, and ``Graven-Index`` = its index; the batch's proof record
follows (``Graven-Kind: proof``). A batch counts as delivered only once JetStream acknowledged every
message; a message the server refuses (too large, say) becomes a dead letter with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from graven.errors import ConfigError
from graven.forward.config import SinkConfig
from graven.forward.sinks import Batch, Refused, Retry

DEFAULT_TIMEOUT = 10.0


class NatsSink:
    def __init__(self, config: SinkConfig) -> None:
        self.config = config
        options = config.options
        self.url = str(options["url"])
        self.stream = str(options["stream"])
        self.subject = str(options["subject"])
        self.timeout = float(options.get("timeout", DEFAULT_TIMEOUT))
        self.loop = asyncio.new_event_loop()
        self.nc: Any = None
        self.js: Any = None

    def _run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coroutine, self.timeout * 3))

    async def _connect(self) -> None:
        import nats

        if self.nc is not None and self.nc.is_connected:
            return
        self.nc = await nats.connect(self.url, connect_timeout=self.timeout, max_reconnect_attempts=0,
                                     allow_reconnect=False)  # fmt: skip
        self.js = self.nc.jetstream(timeout=self.timeout)

    async def _ensure_stream(self) -> None:
        from nats.js.api import StreamConfig
        from nats.js.errors import NotFoundError

        try:
            info = await self.js.stream_info(self.stream)
        except NotFoundError:
            config = StreamConfig(name=self.stream, subjects=[self.subject], deny_delete=True, deny_purge=True)
            await self.js.add_stream(config)
            return
        if not (info.config.deny_delete and info.config.deny_purge):
            raise ConfigError(
                f"forwarder {self.config.name}: stream {self.stream} exists but allows deleting or purging "
                "messages; create it with deny_delete and deny_purge"
            )
        if self.subject not in (info.config.subjects or []):
            raise ConfigError(
                f"forwarder {self.config.name}: stream {self.stream} does not take subject {self.subject} "
                f"(its subjects: {', '.join(info.config.subjects or [])})"
            )

    def open(self) -> None:
        try:
            import nats  # noqa: F401
        except ImportError:
            raise ConfigError(
                f"forwarder {self.config.name}: the NATS sink needs nats-py: pip install 'graven[forward]'"
            ) from None
        try:
            self._run(self._connect())
            self._run(self._ensure_stream())
        except ConfigError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise ConfigError(
                f"forwarder {self.config.name}: cannot reach NATS JetStream at {self.url}: "
                f"{type(exc).__name__}: {exc or 'no answer'}"
            ) from None

    async def _publish(self, batch: Batch) -> Refused:
        from nats.js.errors import APIError

        await self._connect()
        refused = Refused()
        for record in batch.records:
            headers = {"Nats-Msg-Id": record.entry_id, "Graven-Index": str(record.index)}
            try:
                ack = await self.js.publish(self.subject, record.line, stream=self.stream, headers=headers)
            except APIError as exc:
                if exc.code is not None and 400 <= exc.code < 500:
                    refused.entries.append((record.index, record.entry_id, f"JetStream refused it: {exc}"))
                    continue
                raise
            if ack.stream != self.stream:
                raise Retry(f"JetStream acknowledged into stream {ack.stream}, not {self.stream}")
        if batch.proof is not None and batch.proof_line is not None:
            proof = batch.proof["proof"]
            headers = {"Nats-Msg-Id": f"proof-{proof['first']}-{proof['end']}-{proof['tree_size']}",
                       "Graven-Kind": "proof"}  # fmt: skip
            await self.js.publish(self.subject, batch.proof_line, stream=self.stream, headers=headers)
        return refused

    def send(self, batch: Batch) -> Refused:
        try:
            result: Refused = self._run(self._publish(batch))
        except Retry:
            raise
        except Exception as exc:
            self._drop()
            raise Retry(f"NATS {self.url}: {type(exc).__name__}: {exc or 'no answer'}") from None
        return result

    def tick(self) -> None:
        return None

    def _drop(self) -> None:
        if self.nc is not None:
            nc, self.nc, self.js = self.nc, None, None
            with contextlib.suppress(Exception):  # the connection is gone either way
                self.loop.run_until_complete(asyncio.wait_for(nc.close(), 5))

    def close(self) -> None:
        self._drop()
        if not self.loop.is_closed():
            self.loop.close()
