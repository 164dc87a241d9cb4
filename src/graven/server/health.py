"""Health routes for load balancers and orchestrators, without credentials and revealing no content.

- ``GET /healthz``: the process answers (200 ``{"status": "ok"}``), nothing else is looked at.
- ``GET /readyz``: 200 ``{"status": "ready"}`` when the database answers, checkpoint signing is
  healthy (signed and kept beside the key, see :meth:`graven.Trail.signing_status`) and the newest
  signed checkpoint covers the log or its oldest uncovered entry is younger than the bound
  (``checkpoint_interval`` plus :data:`SLACK`); otherwise 503 with the names of the failing checks.
  Only check names are shown: no sizes, paths or reasons (those are in the server's log).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response

from graven.server.api import json_response
from graven.server.auth import state
from graven.trail import Trail

SLACK = 5.0
"""Seconds an entry may wait for its checkpoint beyond ``checkpoint_interval`` before /readyz fails."""

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    failing = await asyncio.to_thread(failing_checks, state(request).trail)
    if failing:
        return json_response({"status": "not ready", "failing": failing}, 503)
    return json_response({"status": "ready"})


def failing_checks(trail: Trail) -> list[str]:
    """The names of the readiness checks that fail: ``database``, ``signing``, ``checkpoint``."""
    status = trail.signing_status()
    failing = [] if status.enabled and not status.degraded else ["signing"]
    try:
        size = trail.store.size()
        latest = trail.store.latest_checkpoint()
        covered = 0 if latest is None else latest.size
        if covered < size and _waited(trail, covered) > status.interval + SLACK:
            failing.append("checkpoint")
    except Exception:  # whatever the database says is not for anonymous callers
        return ["database", *failing]
    return failing


def _waited(trail: Trail, index: int) -> float:
    """Seconds since the first entry no checkpoint covers was recorded (by any process)."""
    recorded = datetime.fromisoformat(trail.get(index).data["recorded_at"])
    return (datetime.now(UTC) - recorded).total_seconds()
