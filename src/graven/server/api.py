"""The log's HTTP routes under /api/v1: ingest, query, entries with proofs, history, checkpoint,
consistency, export and live tail. Each route calls the trail; none updates or deletes an entry.

Every read that shows entries (query, entry, history, export, tail) is first recorded as an
``audit.read`` or ``audit.export`` entry naming who asked and with which filter; if that cannot be
recorded, nothing is shown. Disk I/O runs in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import time
import unicodedata
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal, TypeVar

import orjson
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse

from graven.core import jsonlines, schema
from graven.core.model import Entry, identifier, parse_time
from graven.core.state import as_of_time
from graven.errors import IdempotencyConflict, NotFoundError, ValidationError
from graven.server import schemas
from graven.server.auth import ApiError, Principal, require, route_of, state
from graven.server.limits import json_body
from graven.trail import MAX_INDEX, parse_target
from graven.web.http import attachment

T = TypeVar("T")
MAX_LIMIT = 1000
TAIL_PAGE = 500


def json_response(value: Any, status: int = 200) -> Response:
    return Response(jsonlines.dumps(value), status_code=status, media_type="application/json")


def _filters(
    actor: Annotated[str | None, Query(max_length=200, description="actor id")] = None,
    action: Annotated[str | None, Query(max_length=200, description="exact, or a prefix such as user.*")] = None,
    target: Annotated[str | None, Query(max_length=401, description="TYPE:ID")] = None,
    target_type: Annotated[str | None, Query(max_length=200)] = None,
    outcome: Annotated[schemas.Outcome | None, Query()] = None,
    source: Annotated[str | None, Query(max_length=64)] = None,
    tenant: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[str | None, Query(max_length=64, description="occurred at or after (ISO 8601)")] = None,
    until: Annotated[str | None, Query(max_length=64, description="occurred before (ISO 8601)")] = None,
    text: Annotated[str | None, Query(max_length=1000, description="free text, ASCII case-insensitive")] = None,
    newest_first: bool = False,
) -> dict[str, Any]:
    """The filters given, checked before anything is recorded or read (422 naming the field)."""
    ids = [("actor", actor), ("target_type", target_type), ("tenant", tenant)]
    if target is not None:
        ids += [("target", part) for part in parse_target(target)]
    for name, value in ids:
        if value is not None:
            identifier(value, name)  # the identifier rules: 422 for U+0000 and its kind, before recording
    for name, moment in (("since", since), ("until", until)):
        if moment is not None:
            parse_time(moment, name)
    given = {"actor": actor, "action": action, "target": target, "target_type": target_type, "outcome": outcome,
             "source": source, "tenant": tenant, "since": since, "until": until, "text": text}  # fmt: skip
    found: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if newest_first:
        found["newest_first"] = True
    return found


Filters = Annotated[dict[str, Any], Depends(_filters)]
After = Annotated[int | None, Query(ge=-1, le=MAX_INDEX, description="cursor: entries after this index")]
Before = Annotated[int | None, Query(ge=0, le=MAX_INDEX, description="cursor: entries before this index")]
Reader = Annotated[Principal, Depends(require("reader"))]
Auditor = Annotated[Principal, Depends(require("auditor"))]
Writer = Annotated[Principal, Depends(require("writer"))]

router = APIRouter(prefix="/api/v1", tags=["log"])


async def _recorded_read(request: Request, who: Principal, action: str, run: Callable[[], T], *,
                         metadata: dict[str, Any] | None = None,
                         targets: list[dict[str, str]] | None = None) -> T:  # fmt: skip
    """Record who reads what, then read (both in one worker thread); nothing is read unless recorded."""
    trail = state(request).trail
    event: dict[str, Any] = {
        "action": action, "actor": who.actor, "source": who.source, "targets": targets or [],
        "context": {"route": route_of(request), "method": request.method},
    }  # fmt: skip
    if metadata:
        event["metadata"] = metadata

    def both() -> T:
        trail.record(event)
        return run()

    result = await asyncio.to_thread(both)
    state(request).watcher.poke()
    return result


# --- the entry schema -------------------------------------------------------------------------

_ENTRY_SCHEMA = orjson.dumps(schema.entry_json_schema(), option=orjson.OPT_INDENT_2)


@router.get("/schema/entry-v1.json", response_class=Response, summary="The JSON Schema of a stored entry (v1)",
            responses={200: {"description": "JSON Schema (draft 2020-12); no credentials needed",
                             "content": {"application/schema+json": {"schema": {"type": "object"}}}}})  # fmt: skip
async def entry_schema() -> Response:
    """Every entry the log stores validates against it; it is the same document as the package's
    ``graven/schemas/entry-v1.json``."""
    return Response(_ENTRY_SCHEMA, media_type="application/schema+json")


# --- writing ----------------------------------------------------------------------------------

_EVENTS_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"oneOf": [
        {"$ref": "#/components/schemas/Event"},
        {"type": "array", "items": {"$ref": "#/components/schemas/Event"}, "minItems": 1, "maxItems": 1000},
    ]}}},
}  # fmt: skip


@router.post("/events", status_code=201, response_model=schemas.Ingested, openapi_extra={"requestBody": _EVENTS_BODY},
             summary="Record one event (an object) or a batch (an array, all or nothing)")  # fmt: skip
async def ingest(request: Request, who: Writer) -> Response:
    """Idempotent by event id: an id already in the log returns its first index and appends nothing;
    the same id with other content is refused (409 ``id_conflict``, nothing of the batch recorded)."""
    st = state(request)
    value = json_body(await request.body(), st.config.max_depth)
    single = type(value) is dict
    events = [value] if single else value
    if type(events) is not list:
        raise ValidationError("body", "must be an event (a JSON object) or a batch (a JSON array of events)", value)
    if not 1 <= len(events) <= st.config.max_batch:
        raise ValidationError("body", f"must hold from 1 to {st.config.max_batch} events",
                              f"<{len(events)} events>")  # fmt: skip
    for n, event in enumerate(events):
        if type(event) is dict:
            _complete(event, who, "" if single else f"events[{n}].")
    started = time.perf_counter()
    try:
        with st.trail.writing_as(who.actor):  # names the credential in a refusal the log records
            if single:
                indices = [await asyncio.to_thread(st.trail.record, events[0])]
            else:
                indices = await asyncio.to_thread(st.trail.record_many, events)
    except IdempotencyConflict as exc:
        st.watcher.poke()
        raise ApiError(409, "id_conflict", str(exc), id=exc.event_id, index=exc.index, fields=exc.fields) from None
    st.metrics.ingested(len(events), time.perf_counter() - started)
    st.watcher.poke(max(indices) + 1)
    return json_response({"indices": indices}, 201)


SERVER_CONTEXT = ("ingested_by",)  # context keys only the server writes on ingested events


def _server_key(name: str) -> str | None:
    """The server-owned context key ``name`` spells, ignoring case, width, spaces, ``-``/``_`` and the like."""
    folded = "".join(c for c in unicodedata.normalize("NFKC", name).casefold() if c.isalnum())
    return next((key for key in SERVER_CONTEXT if key.replace("_", "") == folded), None)


def _complete(event: dict[str, Any], who: Principal, at: str) -> None:
    """What the event leaves out, from the caller that sent it (actor, source), and what it may not
    say itself: ``context.ingested_by`` names the authenticated key (or user) alone, so an ingested
    entry never passes for one the server recorded (those have no ``ingested_by``). A client's own
    ``ingested_by`` (in any spelling) is refused with a ValidationError naming the field."""
    if event.get("actor") is None:
        event["actor"] = who.actor
    if event.get("source") is None:
        event["source"] = "api"
    context = event.get("context")
    if context is None:
        context = {}
    elif type(context) is not dict:
        return  # the trail refuses it, naming the field
    for name in context:
        if isinstance(name, str) and (owned := _server_key(name)) is not None:
            raise ValidationError(f"{at}context.{name}", f"is set by the server (context.{owned} names the key "
                                  "that sent the event); leave it out", context[name])  # fmt: skip
    event["context"] = {**context, "ingested_by": who.name}


# --- reading ----------------------------------------------------------------------------------


@router.get("/entries", response_model=schemas.Page, summary="Query entries, one page at a time")
async def query(request: Request, who: Reader, filters: Filters, after: After = None, before: Before = None,
                limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100) -> Response:  # fmt: skip
    """Every filter given must match. Pass ``next_cursor`` as ``after`` (``before`` with newest_first)."""
    trail = state(request).trail
    cursors: dict[str, Any] = {k: v for k, v in (("after", after), ("before", before)) if v is not None}
    page = await _recorded_read(request, who, "audit.read",
                                lambda: trail.query(**filters, **cursors, limit=limit),
                                metadata={"filter": {**filters, **cursors, "limit": limit}})  # fmt: skip
    return json_response({"entries": [e.to_json() for e in page.entries], "next_cursor": page.next_cursor})


@router.get("/entries/{index}", response_model=schemas.Proof, summary="One entry with its inclusion proof")
async def entry(request: Request, who: Reader, index: Annotated[int, Path(ge=0, le=MAX_INDEX)]) -> Response:
    """The entry, its RFC 9162 inclusion proof and a signed checkpoint covering it (an offline bundle)."""
    trail = state(request).trail
    bundle = await _recorded_read(request, who, "audit.read", lambda: trail.prove(index),
                                  targets=[{"type": "entry", "id": str(index)}])  # fmt: skip
    return json_response(bundle)


@router.get("/history", response_model=schemas.Page, summary="Everything done to one target, oldest first")
async def history(request: Request, who: Reader, target: Annotated[str, Query(max_length=401, description="TYPE:ID")],
                  after: After = None, limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100) -> Response:  # fmt: skip
    trail = state(request).trail
    kind, sep, ident = target.partition(":")
    if not sep or not kind or not ident or len(kind) > 200 or len(ident) > 200:
        raise ValidationError("target", "must be TYPE:ID (each at most 200 characters), such as customer:c-1042",
                              target)  # fmt: skip
    kind, ident = identifier(kind, "target"), identifier(ident, "target")  # 422 before recording; NFC
    page = await _recorded_read(request, who, "audit.read",
                                lambda: trail.query(target=(kind, ident), after=after, limit=limit),
                                targets=[{"type": kind, "id": ident}],
                                metadata={"filter": {"target": target}})  # fmt: skip
    return json_response({"entries": [e.to_json() for e in page.entries], "next_cursor": page.next_cursor})


@router.get("/state", summary="A target's fields as of a moment, replayed from its recorded changes")
async def target_state(request: Request, who: Reader,
                       target: Annotated[str, Query(max_length=401, description="TYPE:ID")],
                       as_of: Annotated[str | None, Query(max_length=64, description="ISO 8601, UTC default")] = None,
                       at_index: Annotated[int | None, Query(ge=0, le=MAX_INDEX)] = None,
                       proof: Annotated[bool, Query(description="answer with an offline state bundle")] = False,
                       ) -> Response:  # fmt: skip
    """The state (fields with status and the entry that set each), or with ``proof=true`` a bundle that
    ``graven verify --bundle`` checks offline. Recorded as an ``audit.read`` naming the target."""
    trail = state(request).trail
    kind, ident = parse_target(target)
    kind, ident = identifier(kind, "target"), identifier(ident, "target")  # 422 before recording
    if as_of is not None:
        as_of_time(as_of)
    run = (lambda: trail.prove_state((kind, ident), as_of=as_of, at_index=at_index)) if proof else (
        lambda: trail.state((kind, ident), as_of=as_of, at_index=at_index).to_json())  # fmt: skip
    given = {"target": target, "as_of": as_of, "at_index": at_index}
    answer = await _recorded_read(request, who, "audit.read", run, targets=[{"type": kind, "id": ident}],
                                  metadata={"filter": {k: v for k, v in given.items() if v is not None}})  # fmt: skip
    return json_response(answer)


# --- proving ----------------------------------------------------------------------------------


@router.get("/checkpoint", response_class=PlainTextResponse, summary="The latest signed checkpoint (a signed note)",
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})  # fmt: skip
async def checkpoint(request: Request, who: Reader) -> PlainTextResponse:
    """Signed now if the tree grew since the last one (and the server holds the signing key)."""
    trail = state(request).trail

    def latest() -> str | None:
        if trail.signer is not None and trail.write_refusal is None:
            return trail.checkpoint()
        return trail.latest_checkpoint()

    note = await asyncio.to_thread(latest)
    if note is None:
        raise NotFoundError("the log has no signed checkpoint yet")
    return PlainTextResponse(note)


@router.get("/consistency", response_model=schemas.Consistency, summary="A consistency proof between two tree sizes")
async def consistency(request: Request, who: Reader, old: Annotated[int, Query(ge=0, le=MAX_INDEX)],
                      new: Annotated[int, Query(ge=0, le=MAX_INDEX)]) -> Response:  # fmt: skip
    trail = state(request).trail
    proof = await asyncio.to_thread(trail.consistency, old, new)
    return json_response({"old_size": old, "new_size": new, "proof": [base64.b64encode(h).decode() for h in proof]})


# --- export and tail --------------------------------------------------------------------------

CSV_COLUMNS = ("index", "id", "occurred_at", "recorded_at", "actor_type", "actor_id", "actor_name", "actor_ip",
               "action", "targets", "outcome", "reason", "changes", "source", "tenant", "context",
               "metadata")  # fmt: skip
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


@router.get("/export", summary="Stream every entry matching the filters as JSON Lines or CSV",
            responses={200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}},
                                         "text/csv": {"schema": {"type": "string"}}}}})  # fmt: skip
async def export(request: Request, who: Auditor, filters: Filters,
                 format: Annotated[Literal["jsonl", "csv"], Query()] = "jsonl",
                 limit: Annotated[int | None, Query(ge=1, le=MAX_INDEX)] = None) -> StreamingResponse:  # fmt: skip
    """Read page by page (constant memory). CSV cells that a spreadsheet would run as a formula get a
    leading apostrophe; JSON Lines are the entries exactly as stored, plus ``index``."""
    st = state(request)
    await _recorded_read(request, who, "audit.export", lambda: None,
                         metadata={"filter": filters, "format": format, "limit": limit})  # fmt: skip
    step = st.config.export_page
    cursor_key = "before" if filters.get("newest_first") else "after"

    async def pages() -> AsyncIterator[list[Entry]]:
        cursor: int | None = None
        remaining = limit
        while remaining is None or remaining > 0:
            size = step if remaining is None else min(step, remaining)
            where: dict[str, Any] = {} if cursor is None else {cursor_key: cursor}
            page = await asyncio.to_thread(st.trail.query, **filters, **where, limit=size)
            if page.entries:
                yield page.entries
            if remaining is not None:
                remaining -= len(page.entries)
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def lines() -> AsyncIterator[bytes]:
        if format == "csv":
            yield _csv_rows([CSV_COLUMNS])
            async for entries in pages():
                yield _csv_rows([_csv_row(e) for e in entries])
        else:
            async for entries in pages():
                yield b"".join(jsonlines.line(e.to_json()) for e in entries)

    media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    name = f"graven-export.{'csv' if format == 'csv' else 'jsonl'}"
    disposition = {"Content-Disposition": attachment(name)}
    return StreamingResponse(lines(), media_type=media, headers=disposition)


def _csv_rows(rows: list[Any]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


def _csv_row(e: Entry) -> list[Any]:
    d, actor = e.data, e.data["actor"]
    targets = ";".join(f"{t['type']}:{t['id']}" for t in d["targets"])
    values = [e.index, d["id"], d["occurred_at"], d["recorded_at"], actor.get("type"), actor.get("id"),
              actor.get("name"), actor.get("ip"), d["action"], targets, d["outcome"], d.get("reason"),
              d["changes"] or None, d.get("source"), d.get("tenant"), d.get("context"), d.get("metadata")]  # fmt: skip
    return [_cell(v) for v in values]


@router.get("/tail", summary="Live tail: new entries as server-sent events (id = index)",
            responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}})  # fmt: skip
async def tail(request: Request, who: Reader,
               start: Annotated[int | None, Query(alias="from", ge=0, le=MAX_INDEX,
                                                  description="first index to send (default: the next)")] = None,
               limit: Annotated[int | None, Query(ge=1, le=MAX_INDEX, description="end after this many")] = None,
               last_event_id: Annotated[str | None, Header(max_length=20)] = None) -> StreamingResponse:  # fmt: skip
    """Each event is ``id: <index>``, ``event: entry``, ``data: <entry JSON>``. A reconnecting client's
    ``Last-Event-ID`` resumes right after that index (it wins over ``from``)."""
    st = state(request)
    if last_event_id is not None:
        if not last_event_id.strip().isdigit():
            raise ValidationError("Last-Event-ID", "must be the index of the last entry received", last_event_id)
        first = int(last_event_id) + 1
    else:
        first = start if start is not None else -1
    size = await _recorded_read(request, who, "audit.read", st.trail.store.size,
                                metadata={"tail_from": "next" if first < 0 else first})  # fmt: skip
    first = size if first < 0 else first  # by default, what is appended after this request was recorded

    async def events() -> AsyncIterator[bytes]:
        last, sent, quiet_since = first - 1, 0, time.monotonic()
        while True:
            page = await asyncio.to_thread(st.trail.query, after=last, limit=TAIL_PAGE)
            chunk = []
            for e in page.entries:
                chunk.append(b"id: %d\nevent: entry\ndata: %s\n\n" % (e.index, jsonlines.dumps(e.to_json())))
                last, sent = e.index, sent + 1
                if limit is not None and sent >= limit:
                    yield b"".join(chunk)
                    return
            if chunk:
                yield b"".join(chunk)
                quiet_since = time.monotonic()
                if page.next_cursor is not None:
                    continue
            elif time.monotonic() - quiet_since >= st.config.tail_keepalive:
                yield b": keepalive\n\n"
                quiet_since = time.monotonic()
            if await request.is_disconnected():
                return
            await st.watcher.wait_beyond(last + 1, st.config.tail_keepalive)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip


# --- verification -----------------------------------------------------------------------------


@router.post("/verifications", status_code=202, response_model=schemas.Job,
             summary="Start verifying the whole log in the background (or get the running job)")  # fmt: skip
async def start_verification(
    request: Request,
    who: Auditor,
    deep: Annotated[bool, Query(description="also check indexes and append-only triggers (verify --deep)")] = False,
) -> Response:
    job, _ = await asyncio.to_thread(state(request).jobs.start, who.actor, who.source, deep=deep)
    return json_response(job, 202)


@router.get("/verifications/{job_id}", response_model=schemas.Job, summary="A verification job: progress and result")
async def verification(request: Request, who: Auditor, job_id: Annotated[str, Path(max_length=64)]) -> Response:
    job = await asyncio.to_thread(state(request).jobs.get, job_id)
    if job is None:
        raise NotFoundError(f"no verification job {job_id}")
    return json_response(job)
