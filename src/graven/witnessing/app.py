"""The witness over HTTP (Starlette): ``POST /add-checkpoint`` per c2sp.org/tlog-witness, plus reads.

- ``POST /add-checkpoint``: the spec's call; answers 200 with the cosignature line, or 400, 403,
  404, 409 (``text/x.tlog.size`` when it carries the cosigned size), 413 or 422.
- ``GET /checkpoint?origin=ORIGIN`` (a Graven extension, not in the spec): the newest checkpoint
  cosigned for that log, as a signed note with the witness's cosignature, so a verifier can
  compare its copy of the log with what the witness saw.
- ``GET /logs`` (a Graven extension): the witness's verifier key and, per served log, the size
  last cosigned.

Error bodies other than the spec's size answer are JSON ``{"error", "kind"}``.
"""

from __future__ import annotations

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graven.security_headers import secure
from graven.witnessing.protocol import MAX_BODY
from graven.witnessing.service import StateError, WitnessService


def _json(status: int, value: object) -> Response:
    return Response(orjson.dumps(value) + b"\n", status_code=status, media_type="application/json")


def _error(status: int, kind: str, message: str) -> Response:
    return _json(status, {"error": message, "kind": kind})


async def _body(request: Request) -> bytes | None:
    """The request body, or None as soon as it is known to exceed MAX_BODY."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(service: WitnessService) -> Starlette:
    """The ASGI application serving one witness."""

    async def add_checkpoint(request: Request) -> Response:
        body = await _body(request)
        if body is None:
            return _error(413, "too-large", f"the request body must be at most {MAX_BODY} bytes")
        client = request.client.host if request.client else "unknown"
        reply = await run_in_threadpool(lambda: service.add_checkpoint(body, client=client))
        # The content type is set verbatim: Starlette would add "; charset=utf-8" to text/x.tlog.size.
        return Response(reply.body, status_code=reply.status, headers={"Content-Type": reply.content_type})

    async def checkpoint(request: Request) -> Response:
        origin = request.query_params.get("origin")
        if not origin:
            return _error(400, "malformed", "the query parameter origin is required (the log's origin line)")
        try:
            note = await run_in_threadpool(service.latest, origin)
        except StateError as exc:
            return _error(500, "state-error", str(exc))
        if note is None:
            known = origin in service.logs
            message = "nothing was cosigned yet for" if known else "this witness does not serve the log"
            return _error(404, "not-found" if known else "unknown-log", f"{message} {origin!r}")
        return Response(note, media_type="text/plain; charset=utf-8")

    async def logs(request: Request) -> Response:
        try:
            served = await run_in_threadpool(service.known_logs)
        except StateError as exc:
            return _error(500, "state-error", str(exc))
        return _json(200, {"witness": service.verifier_key, "logs": served})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, "http", f"{request.method} {request.url.path}: {exc.detail}")

    app = Starlette(
        routes=[
            Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
            Route("/checkpoint", checkpoint, methods=["GET"]),
            Route("/logs", logs, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
    )
    secure(app)  # the same headers as every other Graven server: nosniff on text/plain notes above all
    return app
