"""Searches from the console's form: parsing the query string, and exporting as JSON Lines or CSV.

Bad input raises :class:`~graven.errors.ValidationError` naming the field, the rule and what was
given, before anything is read.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from graven.core import jsonlines
from graven.core.model import Entry
from graven.errors import ValidationError
from graven.trail import MAX_INDEX, Trail, parse_target
from graven.web import present

FILTER_FIELDS = ("actor", "target", "action", "outcome", "source", "since", "until", "text")
OUTCOMES = ("success", "denied", "failure")
MAX_FIELD = 200
MAX_TEXT = 500
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
HIDE_SCAN_PAGES = 20  # pages read at most to fill one page when the viewers' own activity is hidden
EXPORT_PAGE = 1000
EXPORTS = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
CSV_COLUMNS = (
    "index", "occurred_at", "recorded_at", "actor_type", "actor_id", "actor_name", "ip", "user_agent",
    "action", "targets", "outcome", "reason", "source", "changes", "context", "id",
)  # fmt: skip


@dataclass(frozen=True)
class Search:
    """The filters of one search (only those given), the page size and the cursor."""

    filters: dict[str, str]
    limit: int = DEFAULT_LIMIT
    before: int | None = None
    show_all: bool = False  # include the viewers' own activity (see viewers_own)

    def query_args(self) -> dict[str, Any]:
        return dict(self.filters)

    def link(self, **changes: Any) -> str:
        """The query string of this search with some parameters changed (None removes one)."""
        from urllib.parse import urlencode

        params: dict[str, Any] = {**self.filters, "limit": self.limit, "before": self.before,
                                  "all": "1" if self.show_all else None}  # fmt: skip
        params.update(changes)
        return urlencode({k: v for k, v in params.items() if v is not None and v != ""})


def _time(name: str, given: str) -> str:
    """A time from the form (``datetime-local`` without zone means UTC) as ISO 8601 with zone."""
    try:
        moment = datetime.fromisoformat(given.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(name, "must be a date and time such as 2026-11-25T14:05 (UTC)", given) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not 1970 <= moment.year <= 9999:
        raise ValidationError(name, "must lie between the years 1970 and 9999", given)
    return moment.astimezone(UTC).isoformat()


def _int(name: str, given: str, low: int, high: int) -> int:
    if not given.strip().lstrip("-").isdigit() or not low <= int(given) <= high:
        raise ValidationError(name, f"must be a whole number from {low} to {high}", given)
    return int(given)


def parse(params: Mapping[str, str]) -> Search:
    """A :class:`Search` from a query string's parameters (empty ones are ignored)."""
    filters: dict[str, str] = {}
    for name in FILTER_FIELDS:
        given = (params.get(name) or "").strip()
        if not given:
            continue
        limit = MAX_TEXT if name == "text" else MAX_FIELD
        if len(given) > limit:
            raise ValidationError(name, f"must be at most {limit} characters", f"{len(given)} characters")
        if name == "outcome" and given not in OUTCOMES:
            raise ValidationError("outcome", "must be one of success, denied, failure", given)
        if name == "target":
            kind, ident = parse_target(given)
            given = f"{kind}:{ident}"
        if name in ("since", "until"):
            given = _time(name, given)
        if name == "action" and given.endswith("*") and not given.endswith(".*"):
            raise ValidationError("action", "must be exact, or a prefix ending in .* such as user.*", given)
        filters[name] = given
    if "since" in filters and "until" in filters and filters["since"] >= filters["until"]:
        raise ValidationError("until", "must be later than since", params.get("until"))
    limit = _int("limit", params["limit"], 1, MAX_LIMIT) if params.get("limit") else DEFAULT_LIMIT
    before = _int("before", params["before"], 0, MAX_INDEX) if params.get("before") else None
    show_all = params.get("all", "") not in ("", "0")
    return Search(filters, limit, before, show_all)


def viewers_own(entry: Entry) -> bool:
    """Whether an entry is the viewers' own activity: a read through the UI or API (``audit.*``), or an
    anonymous request refused for want of credentials (``http.request``)."""
    return entry.action.startswith("audit.") or (
        entry.action == "http.request" and (entry.actor or {}).get("type") == "anonymous"
    )


def run(trail: Trail, search: Search, hide_own: bool = False) -> tuple[list[Entry], int | None, int]:
    """One page of the search, newest first, the cursor of the next (older) page, and how many entries
    of the viewers' own activity were left out (``hide_own``, unless the search asks for everything or
    names an action). Hiding reads at most :data:`HIDE_SCAN_PAGES` pages to fill one."""
    args = search.query_args()
    if not hide_own or search.show_all or "action" in search.filters:
        page = trail.query(**args, limit=search.limit, before=search.before, newest_first=True)
        return page.entries, page.next_cursor, 0
    kept: list[Entry] = []
    hidden = 0
    before = search.before
    for _ in range(HIDE_SCAN_PAGES):
        page = trail.query(**args, limit=search.limit, before=before, newest_first=True)
        for entry in page.entries:
            if viewers_own(entry):
                hidden += 1
            else:
                kept.append(entry)
                if len(kept) == search.limit:
                    return kept, entry.index if entry.index > 0 else None, hidden
        if page.next_cursor is None:
            return kept, None, hidden
        before = page.next_cursor
    return kept, before, hidden


def export_pages(trail: Trail, search: Search, after: int | None) -> tuple[list[Entry], int | None]:
    """One page of an export (oldest first, every matching entry), and where the next page starts."""
    page = trail.query(**search.query_args(), limit=EXPORT_PAGE, after=after)
    return page.entries, page.next_cursor


def jsonl(entries: list[Entry]) -> bytes:
    """Entries as JSON Lines: the stored fields plus ``index``, one object a line."""
    return b"".join(jsonlines.line(e.to_json()) for e in entries)


def _cell(value: Any) -> str:
    """A spreadsheet-safe cell: text that a spreadsheet would run as a formula is quoted."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "@", "\t", "\r") or (text[:1] == "-" and not _number(text)):
        return "'" + text
    return text


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def csv_header() -> bytes:
    return _csv_rows([list(CSV_COLUMNS)])


def csv_rows(entries: list[Entry]) -> bytes:
    rows = []
    for e in entries:
        actor = e.data.get("actor") or {}
        context = e.data.get("context")
        rows.append([
            e.index, e.data.get("occurred_at"), e.data.get("recorded_at"), actor.get("type"), actor.get("id"),
            actor.get("name"), actor.get("ip"), actor.get("user_agent"), e.action, present.targets(e.targets),
            e.outcome, e.data.get("reason"), e.data.get("source"), present.changes(e.changes),
            orjson.dumps(context).decode() if context else "", e.id,
        ])  # fmt: skip
    return _csv_rows([[_cell(v) for v in row] for row in rows])


def _csv_rows(rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode()


def export_name(search: Search, kind: str) -> str:
    """A file name that says what was exported."""
    parts = [f"{k}-{v}" for k, v in search.filters.items() if k in ("actor", "target", "action", "outcome")]
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in "_".join(parts))[:80]
    return f"graven-{slug or 'all'}.{kind}"


def export_chunks(trail: Trail, search: Search, kind: str) -> Iterator[bytes]:
    """The whole export, page by page (blocking; for tests and scripts)."""
    if kind == "csv":
        yield csv_header()
    after: int | None = None
    while True:
        entries, after = export_pages(trail, search, after)
        yield jsonl(entries) if kind == "jsonl" else csv_rows(entries)
        if after is None:
            return
