"""What the UI last learned about the log's integrity: the header's badge and the marks beside rows.

A :class:`Verification` is the outcome of one whole-log verification made through the UI: when,
whether the log was intact, the first bad index and every index a problem named. It MUST NOT be
shown for a log other than the one it checked (the demo's Reset starts another), and MUST NOT
outlive a change made behind the log's back (the demo's tampering forgets it), so that an old
"intact" never covers new damage. Pure: the clock is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Verification:
    """One whole-log verification: ``size`` entries checked at ``at`` (ISO 8601, UTC)."""

    at: str
    ok: bool
    size: int
    first_bad: int | None
    bad: frozenset[int]
    kind: str | None = None
    only_modified: bool = False  # every problem is a modified entry: the others were each checked sound

    @classmethod
    def from_report(cls, report: dict[str, Any], at: str) -> Verification:
        problems = report.get("problems") or []
        return cls(
            at=at, ok=bool(report["ok"]), size=int(report["size"]), first_bad=report.get("first_bad_index"),
            bad=frozenset(int(p["index"]) for p in problems), kind=report.get("kind"),
            only_modified=bool(problems) and all(p.get("kind") == "modified" for p in problems),
        )  # fmt: skip

    def mark(self, index: int) -> str:
        """``"bad"`` for an entry a problem names, ``"ok"`` for one checked and sound, ``""`` when unknown."""
        if index in self.bad:
            return "bad"
        if index < self.size and (self.ok or self.only_modified or self.first_bad is None or index < self.first_bad):
            return "ok"
        return ""


class Known:
    """The latest verification of each log generation (the demo's Reset makes a new generation)."""

    def __init__(self) -> None:
        self._latest: tuple[int, Verification] | None = None

    def learn(self, generation: int, verification: Verification) -> None:
        self._latest = (generation, verification)

    def forget(self) -> None:
        """The log was changed behind its back: what was known no longer holds."""
        self._latest = None

    def of(self, generation: int) -> Verification | None:
        if self._latest is None or self._latest[0] != generation:
            return None
        return self._latest[1]
