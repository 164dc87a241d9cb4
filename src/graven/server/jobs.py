"""Whole-log verification as a background job, with progress, its result kept for GET.

Job state is kept in the accounts storage (table ``server_jobs``), so every worker process of the
server sees it and a result outlives a restart. One verification runs at a time: asking while one
runs returns the running job. A running job not updated for ``stale_after`` seconds (its server
stopped) shows as failed. Each finished job is also recorded in the log (``audit.verify``, outcome
``success`` when intact, ``failure`` when damage was found) before it shows as done.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from graven.server.accounts import AccountStore
    from graven.trail import Trail

log = logging.getLogger("graven.server")
PROGRESS_EVERY = 0.5  # seconds between stored progress updates


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Jobs:
    """Starts verification jobs on one trail; their state lives in ``store``."""

    def __init__(self, trail: Trail, store: AccountStore, *, stale_after: float = 60.0,
                 clock: Callable[[], datetime] | None = None,
                 on_result: Callable[[bool | None], None] | None = None) -> None:  # fmt: skip
        """``on_result`` hears how each job ended: True intact, False damage found, None it failed to run."""
        self.on_result = on_result or (lambda ok: None)
        self.trail = trail
        self.store = store
        self.stale_after = stale_after
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()

    def _now(self) -> str:
        return _stamp(self._clock())

    def _save(self, job: dict[str, Any]) -> None:
        self.store.upsert_job(job["id"], orjson.dumps(job).decode(), self._now())

    def start(self, actor: Mapping[str, Any], source: str, *, deep: bool = False) -> tuple[dict[str, Any], bool]:
        """The running job, or a new one started in a thread; and whether it is new. ``deep`` also
        checks the storage structures (see :meth:`graven.trail.Trail.verify`)."""
        with self._lock:
            for job_id, _, _ in self.store.select_jobs(20):
                job = self.get(job_id)
                if job is not None and job["status"] == "running":
                    return job, False
            job = {"id": uuid.uuid4().hex, "status": "running", "started_at": self._now(),
                   "started_by": f"{actor.get('type')}:{actor.get('id', '')}", "finished_at": None,
                   "total": self.trail.size, "done": 0, "result": None, "error": None, "deep": deep}  # fmt: skip
            self._save(job)
        threading.Thread(target=self._run, args=(job, dict(actor), source), name=f"graven-verify-{job['id'][:8]}",
                         daemon=True).start()  # fmt: skip
        return job, True

    def get(self, job_id: str) -> dict[str, Any] | None:
        """A job's state; a running job nobody updated for ``stale_after`` seconds is shown as failed."""
        found = self.store.select_job(job_id)
        if found is None:
            return None
        job: dict[str, Any] = orjson.loads(found[0])
        updated = datetime.strptime(found[1], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        if job["status"] == "running" and self._clock() - updated > timedelta(seconds=self.stale_after):
            job.update(status="failed", error="the server stopped while verifying; start a new verification")
        return job

    def _run(self, job: dict[str, Any], actor: dict[str, Any], source: str) -> None:
        last = [time.monotonic()]

        def progress(done: int) -> None:
            job["done"] = done
            if time.monotonic() - last[0] >= PROGRESS_EVERY:
                last[0] = time.monotonic()
                self._save(job)

        try:
            report = self.trail.verify(progress=progress, deep=bool(job.get("deep")))
        except Exception as exc:
            job.update(status="failed", error=f"{type(exc).__name__}: {exc}", finished_at=self._now())
            log.warning("graven: verification job %s failed: %s", job["id"], job["error"])
            self._save(job)
            self.on_result(None)
            return
        job["done"] = report.entries
        try:  # recorded before the job shows as done, so whoever sees the result finds the entry
            self.trail.record({
                "action": "audit.verify", "actor": actor, "source": source,
                "outcome": "success" if report.ok else "failure", "reason": report.message[:4000],
                "targets": [{"type": "log", "id": self.trail.origin}],
                "metadata": {"job": job["id"], "size": report.size, "first_bad_index": report.first_bad_index,
                             "kind": report.kind},
            })  # fmt: skip
        except Exception as exc:  # a damaged log may refuse appends; the job still shows its result
            log.warning("graven: could not record the result of verification job %s: %s", job["id"], exc)
        job.update(result=report.to_json(), status="done", finished_at=self._now())
        self._save(job)
        self.on_result(report.ok)
        log.log(logging.INFO if report.ok else logging.ERROR, "graven: verification job %s: %s", job["id"],
                "intact" if report.ok else f"damage found: {report.message}",
                extra={"job": job["id"], "entries": report.entries, "intact": report.ok})  # fmt: skip
