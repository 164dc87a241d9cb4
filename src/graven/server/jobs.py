"""Whole-log verification as a background job, with progress, its result kept for GET.

One verification runs at a time: asking while one runs returns the running job. The newest
``keep`` jobs are kept in this process's memory; each finished job is also recorded in the log
(``audit.verify``, outcome ``success`` when intact, ``failure`` when damage was found).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graven.trail import Trail

log = logging.getLogger("graven.server")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Job:
    id: str
    started_by: str
    total: int
    started_at: str = field(default_factory=_now)
    status: str = "running"
    done: int = 0
    finished_at: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "started_at": self.started_at, "started_by": self.started_by,
                "finished_at": self.finished_at, "total": self.total, "done": self.done, "result": self.result,
                "error": self.error}  # fmt: skip


class Jobs:
    """Starts verification jobs on one trail and keeps the newest ``keep`` of them."""

    def __init__(self, trail: Trail, keep: int = 50) -> None:
        self.trail = trail
        self.keep = keep
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, actor: Mapping[str, Any], source: str) -> tuple[Job, bool]:
        """The running job, or a new one started in a thread; and whether it is new."""
        with self._lock:
            for job in self._jobs.values():
                if job.status == "running":
                    return job, False
            job = Job(uuid.uuid4().hex, f"{actor.get('type')}:{actor.get('id', '')}", self.trail.size)
            self._jobs[job.id] = job
            while len(self._jobs) > self.keep:
                del self._jobs[next(iter(self._jobs))]
        threading.Thread(target=self._run, args=(job, dict(actor), source), name=f"graven-verify-{job.id[:8]}",
                         daemon=True).start()  # fmt: skip
        return job, True

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _run(self, job: Job, actor: dict[str, Any], source: str) -> None:
        def progress(done: int) -> None:
            job.done = done

        try:
            report = self.trail.verify(progress=progress)
        except Exception as exc:
            job.error, job.status, job.finished_at = f"{type(exc).__name__}: {exc}", "failed", _now()
            log.warning("graven: verification job %s failed: %s", job.id, job.error)
            return
        job.done = report.entries
        try:  # recorded before the job shows as done, so whoever sees the result finds the entry
            self.trail.record({
                "action": "audit.verify", "actor": actor, "source": source,
                "outcome": "success" if report.ok else "failure", "reason": report.message[:4000],
                "targets": [{"type": "log", "id": self.trail.origin}],
                "metadata": {"job": job.id, "size": report.size, "first_bad_index": report.first_bad_index,
                             "kind": report.kind},
            })  # fmt: skip
        except Exception as exc:  # a damaged log may refuse appends; the job still shows its result
            log.warning("graven: could not record the result of verification job %s: %s", job.id, exc)
        job.result = report.to_json()
        job.status, job.finished_at = "done", _now()
