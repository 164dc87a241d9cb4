"""``GET /metrics``: the service's figures in the Prometheus text format (through ``prometheus-client``).

Counted as they happen, in this process: entries appended through the API
(``graven_entries_appended_total``), ingest latency (``graven_ingest_seconds``, from the parsed
body to the durable commit), events per ingest request (``graven_ingest_batch_size``),
verification jobs by result (``graven_verifications_total{result="intact|damaged|error"}``) and
requests refused for too many failed authentications (``graven_throttled_requests_total``).
Read at each scrape: the log's size, the newest checkpoint's size and age (how long the oldest
entry it does not cover has waited: 0 when it covers the log), whether signing is degraded, per
witness the age of its newest cosignature and the failed pushes, per forwarder its lag in entries
and seconds. A scrape reveals no entry's content.

The route is allowed to API keys (and users) of the ``metrics`` role and to admins: a scraper's
key can read the figures and nothing else. Counters are per process: with ``--workers N`` each
scrape is answered by one worker (the gauges read from the database are the same in every one).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from graven.server.auth import Principal, require, state

if TYPE_CHECKING:
    from graven.forward.cursor import Cursors
    from graven.trail import Trail

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

Scraper = Annotated[Principal, Depends(require("metrics"))]
router = APIRouter(include_in_schema=False)


class Metrics:
    """The figures of one served log; ``registry`` is this app's own (several apps may share a process)."""

    def __init__(self, trail: Trail) -> None:
        self.trail = trail
        self.registry = CollectorRegistry()
        r = self.registry
        self.appended = Counter("graven_entries_appended", "Entries appended through the API", registry=r)
        self.ingest_seconds = Histogram("graven_ingest_seconds", "Seconds from a parsed ingest body to its commit",
                                        buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.batch_size = Histogram("graven_ingest_batch_size", "Events per ingest request",
                                    buckets=BATCH_BUCKETS, registry=r)  # fmt: skip
        self.verifications = Counter("graven_verifications", "Verification jobs run, by result", ["result"],
                                     registry=r)  # fmt: skip
        self.throttled = Counter("graven_throttled_requests", "Requests refused (429) for too many failed "
                                 "authentications", registry=r)  # fmt: skip
        for result in ("intact", "damaged", "error"):
            self.verifications.labels(result)  # each shows 0 until it happens
        self._lock = threading.Lock()
        self._cursors: Cursors | None = None
        r.register(_LogFigures(self))

    def ingested(self, events: int, seconds: float) -> None:
        self.appended.inc(events)
        self.batch_size.observe(events)
        self.ingest_seconds.observe(seconds)

    def verified(self, ok: bool | None) -> None:
        """A verification job ended: ``True`` intact, ``False`` damage found, ``None`` it could not run."""
        self.verifications.labels("error" if ok is None else "intact" if ok else "damaged").inc()

    def text(self) -> bytes:
        return generate_latest(self.registry)

    def forwarders(self) -> list[dict[str, Any]]:
        """Each configured forwarder's status (graven.toml or $GRAVEN_CONFIG); none without a file."""
        from graven.forward import config
        from graven.forward.cursor import Cursors
        from graven.forward.runner import status

        configs = config.load()
        if not configs:
            return []
        with self._lock:
            if self._cursors is None:
                self._cursors = Cursors(self.trail.store)
            return status(self.trail, self._cursors, configs)

    def close(self) -> None:
        with self._lock:
            if self._cursors is not None:
                self._cursors.close()
                self._cursors = None


class _LogFigures(Collector):
    """The figures read from the log at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        trail = self.metrics.trail
        size = trail.store.size()
        latest = trail.store.latest_checkpoint()
        covered = 0 if latest is None else latest.size
        yield GaugeMetricFamily("graven_log_entries", "Entries in the log", value=size)
        yield GaugeMetricFamily("graven_checkpoint_size", "Tree size of the newest signed checkpoint", value=covered)
        yield GaugeMetricFamily("graven_checkpoint_age_seconds", "Seconds the oldest entry not covered by the "
                                "newest checkpoint has waited (0: it covers the log)",
                                value=uncovered_for(trail, covered, size))  # fmt: skip
        status = trail.signing_status()
        yield GaugeMetricFamily("graven_signing_degraded", "1 when signing or keeping checkpoints is failing",
                                value=1 if status.enabled and status.degraded else 0)  # fmt: skip
        yield from _witness_figures(trail)
        lag = GaugeMetricFamily("graven_forwarder_lag_entries", "Entries a forwarder has yet to deliver",
                                labels=["forwarder"])  # fmt: skip
        lag_s = GaugeMetricFamily("graven_forwarder_lag_seconds", "Age of the oldest entry a forwarder has yet "
                                  "to deliver", labels=["forwarder"])  # fmt: skip
        for row in self.metrics.forwarders():
            lag.add_metric([row["name"]], row["lag_entries"])
            lag_s.add_metric([row["name"]], row["lag_seconds"])
        yield lag
        yield lag_s


def _witness_figures(trail: Trail) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    age = GaugeMetricFamily("graven_witness_cosignature_age_seconds", "Seconds since a witness last cosigned "
                            "a checkpoint of this process", labels=["witness"])  # fmt: skip
    failures = CounterMetricFamily("graven_witness_failures", "Failed pushes to a witness", labels=["witness"])
    pusher = trail.pusher
    if pusher is not None:
        now = time.time()
        for url in pusher.urls:
            if url in pusher.cosigned_at:
                age.add_metric([url], max(0.0, now - pusher.cosigned_at[url]))
            failures.add_metric([url], pusher.failures.get(url, 0))
    yield age
    yield failures


def uncovered_for(trail: Trail, covered: int, size: int) -> float:
    """Seconds since the first entry no checkpoint covers was recorded (0 when every entry is covered)."""
    if covered >= size:
        return 0.0
    recorded = datetime.fromisoformat(trail.get(covered).data["recorded_at"])
    return max(0.0, (datetime.now(UTC) - recorded).total_seconds())


@router.get("/metrics")
async def metrics(request: Request, who: Scraper) -> Response:
    found: Metrics = state(request).metrics
    body = await asyncio.to_thread(found.text)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
