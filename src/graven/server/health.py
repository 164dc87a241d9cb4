"""Health routes for load balancers and orchestrators, without credentials and revealing no content.

- ``GET /healthz``: the process answers (200 ``{"status": "ok"}``), nothing else is looked at.
- ``GET /readyz``: 200 ``{"status": "ready"}`` when the database answers, checkpoint signing is
  healthy (signed and kept beside the key, see :meth:`graven.Trail.signing_status`) and the newest
  signed checkpoint covers the log or its oldest uncovered entry is younger than the bound
  (``checkpoint_interval`` plus :data:`SLACK`), and every forwarder configured in graven.toml has
  its oldest undelivered entry younger than ``forward_lag_bound`` (``graven serve
  --max-forward-lag``); otherwise 503 with the names of the failing checks (``database``,
  ``signing``, ``checkpoint``, ``forwarders``). Only check names are shown: no sizes, paths, names
  or reasons (those are in the server's log and at ``/metrics``).
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request, Response

from graven.server.api import json_response
from graven.server.auth import state
from graven.server.metrics import Metrics, uncovered_for
from graven.trail import Trail

SLACK = 5.0
"""Seconds an entry may wait for its checkpoint beyond ``checkpoint_interval`` before /readyz fails."""

router = APIRouter(include_in_schema=False)
log = logging.getLogger("graven.server")


@router.get("/healthz")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    st = state(request)
    failing = await asyncio.to_thread(failing_checks, st.trail, st.metrics, st.config.forward_lag_bound)
    if failing:
        return json_response({"status": "not ready", "failing": failing}, 503)
    return json_response({"status": "ready"})


def failing_checks(trail: Trail, metrics: Metrics | None = None, lag_bound: float = 300.0) -> list[str]:
    """The names of the readiness checks that fail: ``database``, ``signing``, ``checkpoint``, ``forwarders``."""
    status = trail.signing_status()
    failing = [] if status.enabled and not status.degraded else ["signing"]
    try:
        size = trail.store.size()
        latest = trail.store.latest_checkpoint()
        covered = 0 if latest is None else latest.size
        if uncovered_for(trail, covered, size) > status.interval + SLACK:
            failing.append("checkpoint")
    except Exception:  # whatever the database says is not for anonymous callers
        return ["database", *failing]
    if metrics is not None:
        try:
            lagging = [f["name"] for f in metrics.forwarders() if f["lag_seconds"] > lag_bound]
        except Exception as exc:  # an unreadable graven.toml or cursor table: not ready, said in the log
            log.warning("graven: /readyz could not read the forwarders' state: %s", exc)
            lagging = ["?"]
        if lagging:
            log.warning("graven: /readyz: forwarders behind by more than %g s: %s", lag_bound, ", ".join(lagging))
            failing.append("forwarders")
    return failing
