"""Webhook and Splunk HEC sinks against a real local HTTP receiver (tokens and HMAC checked):
receiver down then back, permanent refusals, garbage answers, misconfiguration at start."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from graven.errors import ConfigError
from graven.forward.config import SinkConfig, parse_sink
from graven.forward.cursor import Cursors
from graven.forward.proofs import StreamCheck
from graven.forward.runner import Forwarder
from graven.forward.sinks import Retry
from graven.forward.sinks.http import HecSink, WebhookSink, signature
from graven.trail import Trail
from tests.forward.helpers import fill
from tests.forward.receiver import SECRET, TOKEN, Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_HEC_TOKEN", TOKEN)
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)


def hec(receiver: Receiver, **options: Any) -> SinkConfig:
    return parse_sink("hec", {"sink": "hec", "url": receiver.url, "token_env": "TEST_HEC_TOKEN", **options})


def hook(receiver: Receiver, **options: Any) -> SinkConfig:
    return parse_sink("hook", {"sink": "webhook", "url": receiver.url + "/hook", "secret_env": "TEST_HOOK_SECRET",
                               **options})  # fmt: skip


def forwarder(trail: Trail, config: SinkConfig) -> Forwarder:
    f = Forwarder(trail, config, Cursors(trail.store))
    f.open()
    return f


def drain(f: Forwarder) -> None:
    while f.step():
        pass


def run_until(f: Forwarder, position: int, seconds: float = 30) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=f.run, args=(stop,), kwargs={"poll": 0.01})
    thread.start()
    try:
        deadline = time.monotonic() + seconds
        while f.cursors.get(f.name).position < position:
            assert time.monotonic() < deadline, f"stuck at {f.cursors.get(f.name)}"
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(10)


def hec_entries(receiver: Receiver) -> list[int]:
    return [e["event"]["index"] for e in receiver.events if e["sourcetype"] != "graven:proof"]


def test_hec_batches_with_token_and_ack(trail: Trail, receiver: Receiver) -> None:
    fill(trail, 1200)
    f = forwarder(trail, hec(receiver, ack=True, batch=500))
    drain(f)
    assert list(range(1200)) == hec_entries(receiver)
    assert 3 == receiver.acks  # one request (and one ack) per batch of at most 500
    first = receiver.events[0]
    assert trail.get(0).occurred_at.timestamp() == first["time"]  # Splunk indexes by when it happened
    assert "graven:native" == first["sourcetype"]
    assert 0 == receiver.bad_auth
    assert trail.signer is not None
    check = StreamCheck([trail.signer.verifier()])
    for event in receiver.events:  # the native events and proofs, as the SIEM stored them
        check.feed(event["event"])
    assert check.report().ok, check.report().message


def test_hec_receiver_down_then_back_loses_nothing_and_keeps_order(trail: Trail, receiver: Receiver) -> None:
    fill(trail, 50)
    config = hec(receiver, batch=20, retry_max_seconds=0.2)
    f = forwarder(trail, config)
    f.step()
    receiver.stop()
    fill(trail, 50)
    with pytest.raises(Retry):
        f.step()
    assert 20 == f.cursors.get("hec").position
    threading.Timer(0.5, receiver.start).start()  # back on the same port a little later
    run_until(f, trail.size)
    assert list(range(trail.size)) == hec_entries(receiver)


def test_hec_refused_event_is_a_dead_letter_and_the_rest_goes_on(trail: Trail, receiver: Receiver) -> None:
    fill(trail, 10)
    receiver.refuse = {3, 7}
    f = forwarder(trail, hec(receiver, batch=6))
    drain(f)
    assert [0, 1, 2, 4, 5, 6, 8, 9] == hec_entries(receiver)
    dead = f.cursors.dead_letters("hec")
    assert [3, 7] == [d.index for d in dead]
    assert "Invalid data format" in dead[0].reason


def test_hec_garbage_answer_does_not_move_the_cursor(trail: Trail, receiver: Receiver) -> None:
    fill(trail, 5)
    f = forwarder(trail, hec(receiver))
    receiver.garbage = True
    with pytest.raises(Retry, match="proxy error"):
        f.step()
    assert 0 == f.cursors.get("hec").position
    receiver.garbage = False
    drain(f)
    assert 5 == f.cursors.get("hec").position


def test_webhook_signed_per_entry_with_idempotency_keys(trail: Trail, receiver: Receiver) -> None:
    fill(trail, 7)
    f = forwarder(trail, hook(receiver, batch=3))
    drain(f)
    entries = [e for e in receiver.events if "index" in e]
    assert list(range(7)) == [e["index"] for e in entries]
    assert [e["id"] for e in entries] == [k for k in receiver.keys if not k.startswith("proof-")]
    assert 3 == len([e for e in receiver.events if "proof" in e])
    assert 0 == receiver.bad_auth


def test_webhook_resend_is_deduplicated_by_the_receiver(trail: Trail, receiver: Receiver) -> None:
    fill(trail, 4)
    f = forwarder(trail, hook(receiver))
    drain(f)
    f.cursors.reset("hook")  # as if the acknowledgement was lost: the same entries go again
    drain(f)
    assert 4 == len([e for e in receiver.events if "index" in e])


def test_webhook_permanent_refusal_and_garbage(trail: Trail, receiver: Receiver) -> None:
    fill(trail, 5)
    receiver.refuse = {2}
    f = forwarder(trail, hook(receiver))
    receiver.garbage = True
    with pytest.raises(Retry):
        f.step()
    assert 0 == f.cursors.get("hook").position
    receiver.garbage = False
    drain(f)
    (dead,) = f.cursors.dead_letters("hook")
    assert 2 == dead.index
    assert dead.reason.startswith("HTTP 422: ")
    assert "event 2 is not acceptable" in dead.reason
    assert [0, 1, 3, 4] == [e["index"] for e in receiver.events if "index" in e]


def test_webhook_wrong_secret_is_retried_not_acknowledged(trail: Trail, receiver: Receiver,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("TEST_HOOK_SECRET", "not-the-secret")
    fill(trail, 1)
    f = forwarder(trail, hook(receiver))
    drain(f)  # 401 is a permanent refusal: dead letters, never silently "delivered"
    assert not [e for e in receiver.events if "index" in e]
    assert 1 == len(f.cursors.dead_letters("hook"))
    assert receiver.bad_auth >= 2


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert f"sha256={expected}" == signature(b"k", "1700000000", b"{}")


def test_misconfiguration_is_refused_at_start(
    trail: Trail, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="cannot reach the receiver"):
        HecSink(parse_sink("x", {"sink": "hec", "url": "http://127.0.0.1:9", "token_env": "TEST_HEC_TOKEN"})).open()
    monkeypatch.setenv("TEST_HEC_TOKEN", "wrong")
    with pytest.raises(ConfigError, match="HEC token was refused"):
        HecSink(hec(receiver)).open()
    monkeypatch.delenv("TEST_HOOK_SECRET")
    with pytest.raises(ConfigError, match=r"secret_env names \$TEST_HOOK_SECRET, which is not set"):
        WebhookSink(hook(receiver)).open()
    with pytest.raises(ConfigError, match=r"TLS certificate not trusted|cannot reach"):
        # a plain-HTTP receiver spoken to over TLS: the handshake fails, so does the start
        WebhookSink(parse_sink("x", {"sink": "webhook", "url": receiver.url.replace("http", "https") + "/hook",
                                     "secret_env": "TEST_HEC_TOKEN"})).open()  # fmt: skip
