"""The NATS JetStream sink against the NATS server at 127.0.0.1:4222 (a missing server fails under
CI=true): the stream made with deny-delete and deny-purge, resends de-duplicated by Nats-Msg-Id."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from graven.errors import ConfigError
from graven.forward.config import SinkConfig, parse_sink
from graven.forward.cursor import Cursors
from graven.forward.proofs import StreamCheck
from graven.forward.runner import Forwarder
from graven.forward.sinks.nats import NatsSink
from graven.trail import Trail
from tests.forward.helpers import fill

NATS_URL = os.environ.get("GRAVEN_TEST_NATS", "nats://127.0.0.1:4222")


@pytest.fixture(scope="module")
def nats_url() -> str:
    host, port = NATS_URL.removeprefix("nats://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError as exc:
        reason = f"no NATS server at {NATS_URL} (set GRAVEN_TEST_NATS): {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return NATS_URL


async def _admin(url: str, action: str, stream: str, **extra: Any) -> Any:
    import nats
    from nats.js.api import StreamConfig

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        if action == "messages":
            info = await js.stream_info(stream)
            out = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(stream, seq)
                out.append((msg.headers or {}, msg.data))
            return out
        if action == "info":
            return await js.stream_info(stream)
        if action == "delete_msg":
            return await js.delete_msg(stream, extra["seq"])
        if action == "purge":
            return await js.purge_stream(stream)
        if action == "add":
            return await js.add_stream(StreamConfig(name=stream, subjects=[extra["subject"]]))
        if action == "drop":
            return await js.delete_stream(stream)
        raise ValueError(action)
    finally:
        await nc.close()


def admin(url: str, action: str, stream: str, **extra: Any) -> Any:
    return asyncio.run(_admin(url, action, stream, **extra))


@pytest.fixture
def stream(nats_url: str) -> Iterator[str]:
    name = f"GRAVEN_TEST_{secrets.token_hex(4).upper()}"
    yield name
    with contextlib.suppress(Exception):  # never made, or already gone
        admin(nats_url, "drop", name)


def nats_config(url: str, stream: str, **options: Any) -> SinkConfig:
    return parse_sink("js", {"sink": "nats", "url": url, "stream": stream, "subject": f"audit.{stream.lower()}",
                             **options})  # fmt: skip


def test_jetstream_gets_every_entry_with_its_proofs(trail: Trail, nats_url: str, stream: str) -> None:
    fill(trail, 25)
    forwarder = Forwarder(trail, nats_config(nats_url, stream, batch=10), Cursors(trail.store))
    forwarder.open()
    try:
        while forwarder.step():
            pass
        info = admin(nats_url, "info", stream)
        assert info.config.deny_delete
        assert info.config.deny_purge
        messages = admin(nats_url, "messages", stream)
        assert 25 + 3 == len(messages)
        entries = [(h, orjson.loads(d)) for h, d in messages if "Graven-Kind" not in h]
        assert [e["id"] for _, e in entries] == [h["Nats-Msg-Id"] for h, _ in entries]
        assert list(range(25)) == [int(h["Graven-Index"]) for h, _ in entries]
        assert trail.signer is not None
        check = StreamCheck([trail.signer.verifier()])
        for _, data in messages:
            check.feed_line(data, "a message")
        assert check.report().ok, check.report().message
        # a resend (the acknowledgement lost) is dropped by the stream: same Nats-Msg-Id
        forwarder.cursors.reset("js")
        while forwarder.step():
            pass
        assert 28 == len(admin(nats_url, "messages", stream))
    finally:
        forwarder.close()
    with pytest.raises(Exception, match="message delete not permitted"):
        admin(nats_url, "delete_msg", stream, seq=1)
    with pytest.raises(Exception, match="stream purge not permitted"):
        admin(nats_url, "purge", stream)


def test_a_stream_that_allows_deletes_is_refused(nats_url: str, stream: str) -> None:
    admin(nats_url, "add", stream, subject=f"audit.{stream.lower()}")
    with pytest.raises(ConfigError, match="allows deleting or purging"):
        NatsSink(nats_config(nats_url, stream)).open()


def test_an_unreachable_server_is_refused_at_start(stream: str) -> None:
    with pytest.raises(ConfigError, match=r"cannot reach NATS JetStream at nats://127\.0\.0\.1:9"):
        NatsSink(nats_config("nats://127.0.0.1:9", stream, timeout=1)).open()
