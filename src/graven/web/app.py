"""The web UI as a FastAPI application: try it yourself, investigate, watch live, see how it works.

``create_web_app(trail, viewer=...)`` serves an application's own log; ``create_web_app(demo=True)``
serves the demo's :class:`~graven.web.sandbox.Sandbox`. Pages are rendered on the server with
Jinja2; a little JavaScript of the package's own adds live updates (server-sent events) and actions
without reloads. Every route is thin: it reads its input, makes one call into the log in a worker
thread (the event loop never waits on the disk), and renders. Who is looking comes from an injected
``viewer(request)``, or from a :class:`Gate` that also decides what the viewer may use (reading, or
auditing: whole-log verification and export); a request without a viewer gets 401 (or, with a
gate's sign-in page, a browser is sent there). State-changing requests MUST come from the UI's own
origin (cross-site requests get 403), and through a gate MUST also pass its checks (e.g. CSRF).
Bad input gets 4xx with the field, the rule and what was given: an HTML page for a browser, JSON
for ``Accept: application/json``.
"""

from __future__ import annotations

import asyncio
import inspect
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from graven import __version__
from graven.core.model import ACTOR_TYPES, Entry
from graven.errors import ConfigError, GravenError, NotFoundError, ValidationError
from graven.forward.runner import configured_status as forwarder_status
from graven.security_headers import secure
from graven.trail import Trail
from graven.web import explain, http, live, present, pretend, proof, search
from graven.web.sandbox import STORY_CUSTOMER, FixedLog, LogFull, LogSource, Sandbox

HERE = Path(__file__).parent
DEMO_POSTS_PER_MINUTE = 30  # per client address: attempts, persona switches, resets, tampering, verifying
T = TypeVar("T")


@dataclass(frozen=True)
class Viewer:
    """Who is looking at the audit log (recorded as the actor of "who looked" entries)."""

    id: str
    name: str
    type: str = "user"  # an actor type: user, service, system or anonymous
    role: str | None = None  # shown beside the name when given
    may_audit: bool = True  # whole-log verification and export; hidden and refused when False
    csrf_token: str | None = field(default=None, repr=False)  # sent with every form that changes state
    sign_out: str | None = None  # where the nav's sign-out button posts (with the CSRF token)
    ip: str | None = None  # the client's address as the gate determined it (else the socket's)

    def __post_init__(self) -> None:
        if self.type not in ACTOR_TYPES:
            raise ConfigError(f"Viewer.type must be one of {', '.join(ACTOR_TYPES)}; got {self.type!r}")


DEMO_VISITOR = Viewer("demo-visitor", "Demo visitor", "anonymous")
ViewerFunction = Callable[[Request], "Viewer | Awaitable[Viewer | None] | None"]
Need = Literal["read", "audit"]


class Gate(Protocol):
    """Admits the viewer of a request to what a route needs, or raises SignInRequired / Denied.

    ``need`` is ``"read"`` (search, timelines, entries and proofs, tail, how it works) or
    ``"audit"`` (whole-log verification, export). A gate records its own refusals.
    """

    async def admit(self, request: Request, need: Need) -> Viewer: ...


class SignInRequired(GravenError):
    """No viewer: the request must come from someone signed in (at ``sign_in``, when given)."""

    def __init__(self, message: str, sign_in: str | None = None) -> None:
        super().__init__(message)
        self.sign_in = sign_in


class Denied(GravenError):
    """The viewer may not do this (``status`` 403), or must wait (429 with Retry-After)."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None,
                 viewer: Viewer | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.headers = headers
        self.viewer = viewer


class _ViewerGate:
    """A gate over a plain ``viewer(request)`` function: every viewer reads; audits need ``may_audit``."""

    def __init__(self, viewer: ViewerFunction) -> None:
        self.viewer = viewer

    async def admit(self, request: Request, need: Need) -> Viewer:
        found = self.viewer(request)
        if inspect.isawaitable(found):
            found = await found
        if found is None:
            raise SignInRequired("sign in to see the audit log")
        if need == "audit" and not found.may_audit:
            raise Denied(403, "verification and export need an auditor", viewer=found)
        return found


def create_web_app(
    trail: Trail | None = None,
    *,
    demo: bool = False,
    sandbox: Sandbox | None = None,
    viewer: ViewerFunction | None = None,
    verifier_key: str | None = None,
    record_reads: bool | None = None,
    gate: Gate | None = None,
    hosts: http.Hosts | None = None,
    posts_per_minute: int = DEMO_POSTS_PER_MINUTE,
) -> FastAPI:
    """The UI over ``trail`` (``demo=False``) or over the demo's sandbox (``demo=True``).

    ``viewer(request)`` returns who is looking, or None for "not signed in" (401); outside the demo
    it (or a ``gate`` deciding who may read and who may audit) is required; in the demo it defaults
    to the anonymous demo visitor. The demo-only pages (try it, tamper, reset) exist only in the demo.
    ``verifier_key`` pins the key that proofs and verification trust. ``record_reads`` (default: on
    outside the demo) records every search, view, export and verification as an entry naming the viewer.
    ``hosts`` (``graven demo`` passes the names it serves) refuses requests for any other ``Host``
    with 400, against DNS rebinding. In the demo, each client address may post at most
    ``posts_per_minute`` times a minute (then 429 with Retry-After; the refusals are not recorded, so
    that they cannot fill the log); the sandbox bounds the log's size.
    """
    owned: Sandbox | None = None
    source: LogSource
    if demo:
        if trail is not None:
            raise ConfigError("demo=True serves its own sandbox log; pass sandbox=..., not a trail")
        if sandbox is None:
            owned = sandbox = Sandbox(Path(tempfile.mkdtemp(prefix="graven-demo-")) / "demo", owned=True)
        source = sandbox
    else:
        if trail is None:
            raise ConfigError("create_web_app needs the trail to show (or demo=True)")
        if viewer is None and gate is None:
            raise ConfigError("outside the demo, create_web_app needs viewer=: a function naming who is signed in")
        source = FixedLog(trail)
    if gate is not None and viewer is not None:
        raise ConfigError("create_web_app takes viewer= or gate=, not both")
    chosen = gate or _ViewerGate(viewer or (lambda request: DEMO_VISITOR))
    ui = _UI(source, chosen, verifier_key, (not demo) if record_reads is None else record_reads)
    ui.posts = http.PerClient(posts_per_minute) if demo else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            ui.closing.set()
            if owned is not None:
                await run_in_threadpool(owned.close)

    app = FastAPI(title="Graven", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.graven_ui = ui
    ui.install(app)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    if hosts is not None:
        app.add_middleware(http.HostCheck, hosts=hosts, page=ui.host_page)
    secure(app)
    return app


class _UI:
    """The routes, sharing one log source, one template environment and one pulse."""

    def __init__(self, source: LogSource, gate: Gate, key: str | None, record_reads: bool) -> None:
        self.source = source
        self.gate = gate
        self.key = key
        self.record_reads = record_reads
        self.pulse = live.Pulse()
        self.closing = asyncio.Event()
        self.posts: http.PerClient | None = None
        self.env = Environment(
            loader=PackageLoader("graven.web", "templates"), autoescape=select_autoescape(default=True),
            undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
            auto_reload=False,  # templates are read once: no file checks on the event loop
        )  # fmt: skip
        self.env.filters.update(present.FILTERS)
        self.env.globals.update(version=__version__, demo=source.demo, OUTCOMES=present.OUTCOME_LABELS)
        for name in self.env.list_templates():  # read and compiled now, never from the event loop
            self.env.get_template(name)

    @property
    def sandbox(self) -> Sandbox:
        if not isinstance(self.source, Sandbox):
            raise HTTPException(404, "this page exists only in the demo (graven demo)")
        return self.source

    def install(self, app: FastAPI) -> None:
        routes: list[tuple[str, Callable[..., Awaitable[Response]], str]] = [
            ("/", self.home, "GET"),
            ("/console", self.console, "GET"),
            ("/console/export", self.export, "GET"),
            ("/timeline", self.timeline, "GET"),
            ("/entry/{index}", self.entry, "GET"),
            ("/entry/{index}/bundle", self.bundle, "GET"),
            ("/verify", self.verify, "POST"),
            ("/tail", self.tail, "GET"),
            ("/events", self.events, "GET"),
            ("/how", self.how, "GET"),
        ]
        if not self.source.demo:
            routes.append(("/forwarders", self.forwarders, "GET"))
        if self.source.demo:
            routes += [
                ("/try", self.try_page, "GET"),
                ("/try/persona", self.switch_persona, "POST"),
                ("/try/attempt", self.attempt, "POST"),
                ("/try/reset", self.reset, "POST"),
                ("/try/tamper", self.tamper, "POST"),
            ]
        for path, endpoint, method in routes:
            app.add_api_route(path, endpoint, methods=[method], include_in_schema=False)
        app.add_exception_handler(GravenError, self.on_error)  # type: ignore[arg-type]
        app.add_exception_handler(HTTPException, self.on_http_error)  # type: ignore[arg-type]

    # --- plumbing ------------------------------------------------------------------------------

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """``function(trail, *args)`` in a worker thread, with the log held open meanwhile."""

        def work() -> T:
            with self.source.using() as trail:
                return function(trail, *args)

        return await run_in_threadpool(work)

    async def who(self, request: Request, need: Need = "read") -> Viewer:
        """The viewer, admitted by the gate to ``need``; a viewer who may not audit never does."""
        found = await self.gate.admit(request, need)
        if need == "audit" and not found.may_audit:
            raise Denied(403, "verification and export need an auditor", viewer=found)
        return found

    def throttle(self, request: Request, viewer: Viewer) -> None:
        """In the demo: count this post against the client's address; 429 past the limit."""
        if self.posts is None:
            return
        client = request.client.host if request.client else "unknown"
        wait = self.posts.take(client)
        if wait:
            raise Denied(429, f"too many requests from {client}: the demo takes at most {self.posts.limit} "
                              f"a minute from one address; try again in {wait} s",
                         headers={"Retry-After": str(wait)}, viewer=viewer)  # fmt: skip

    def host_page(self, message: str) -> str:
        """The page of a request for a host this server does not serve (in the UI's style)."""
        return self.env.get_template("error.html").render(base="", viewer=None, code=400, error={"error": message})

    async def looked(self, request: Request, viewer: Viewer, action: str, **details: Any) -> None:
        """Record that ``viewer`` read the log ("who looked"), when reads are recorded."""
        if not self.record_reads:
            return
        actor: dict[str, Any] = {"type": viewer.type, "id": viewer.id, "name": viewer.name}
        if viewer.ip:
            actor["ip"] = viewer.ip
        elif request.client and http.is_ip(request.client.host):
            actor["ip"] = request.client.host
        if agent := request.headers.get("user-agent"):
            actor["user_agent"] = agent[:1024]
        event = {"action": action, "actor": actor, "source": "web",
                 "context": {"route": request.url.path}, "metadata": details}  # fmt: skip
        await self.call(lambda trail: trail.record(event))
        self.pulse.fire()

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        base = http.base(request)
        viewer = context.pop("viewer", None)
        html = self.env.get_template(template).render(base=base, viewer=viewer, **context)
        return HTMLResponse(html, status_code=status)

    def fragment(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(**context)

    def item(self, request: Request, entry: Entry, seeded: int | None = None) -> dict[str, Any]:
        """An entry as pushed to a page: its index and its rendered row."""
        base = http.base(request)
        html = self.fragment("_entry_item.html", e=entry, base=base)
        return {"index": entry.index, "html": html, "visitor": seeded is not None and entry.index >= seeded}

    async def on_error(self, request: Request, exc: GravenError) -> Response:
        status = 400
        if isinstance(exc, SignInRequired) and exc.sign_in and not http.wants_json(request):
            return RedirectResponse(exc.sign_in, 303)
        if isinstance(exc, Denied):
            refusal = {"error": str(exc)}
            if http.wants_json(request):
                return JSONResponse(refusal, status_code=exc.status, headers=exc.headers)
            page = self.render(request, "error.html", exc.status, code=exc.status, error=refusal, viewer=exc.viewer)
            page.headers.update(exc.headers or {})
            return page
        if isinstance(exc, NotFoundError):
            status = 404
        elif isinstance(exc, LogFull):
            status = 409
        elif isinstance(exc, SignInRequired):
            status = 401
        elif isinstance(exc, http.Refused):
            status = 403
        elif isinstance(exc, ConfigError):
            status = 409
        body: dict[str, Any] = {"error": str(exc)}
        if isinstance(exc, SignInRequired) and exc.sign_in:
            body["sign_in"] = exc.sign_in
        if isinstance(exc, ValidationError):
            body.update(field=exc.field, rule=exc.rule, given=exc.given)
        return self.error(request, status, body)

    async def on_http_error(self, request: Request, exc: HTTPException) -> Response:
        return self.error(request, exc.status_code, {"error": str(exc.detail)})

    def error(self, request: Request, status: int, body: dict[str, Any]) -> Response:
        if http.wants_json(request):
            return JSONResponse(body, status_code=status)
        return self.render(request, "error.html", status, code=status, error=body, viewer=None)

    # --- the pages -------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        await self.who(request)
        base = http.base(request)
        return RedirectResponse(f"{base}/try" if self.source.demo else f"{base}/console", 303)

    async def try_page(self, request: Request) -> Response:
        viewer = await self.who(request)
        box = self.sandbox
        session, persona = http.demo_cookie(request, box.world)

        def read(trail: Trail) -> tuple[list[Entry], dict[str, int], int]:
            entries = trail.query(after=box.seeded - 1, newest_first=True, limit=100).entries
            return entries, box.counters(trail), trail.size

        entries, counters, size = await self.call(read)
        response = self.render(
            request, "try.html", viewer=viewer, world=box.world, persona=box.world.people[persona],
            entries=entries, counters=counters, after=size - 1, generation=box.generation,
            roles=pretend.ROLES, permissions=pretend.PERMISSIONS, seeded=box.seeded,
            size=size, max_entries=box.max_entries, full=size + 2 > box.max_entries,
        )  # fmt: skip
        http.set_demo_cookie(response, session, persona)
        return response

    async def switch_persona(self, request: Request) -> Response:
        viewer = await self.who(request)
        http.same_origin(request)
        self.throttle(request, viewer)
        box = self.sandbox
        form = await http.read_form(request)
        persona = form.get("persona", "")
        if persona not in box.world.people:
            raise ValidationError("persona", f"must be one of {', '.join(box.world.people)}", persona)
        session, _ = http.demo_cookie(request, box.world)
        if http.wants_json(request):
            person = box.world.people[persona]
            html = self.fragment("_persona.html", persona=person, permissions=pretend.PERMISSIONS)
            response: Response = JSONResponse({"persona": persona, "name": person.name, "html": html})
        else:
            response = RedirectResponse(f"{http.base(request)}/try", 303)
        http.set_demo_cookie(response, session, persona)
        return response

    async def attempt(self, request: Request) -> Response:
        viewer = await self.who(request)
        http.same_origin(request)
        self.throttle(request, viewer)
        box = self.sandbox
        form = await http.read_form(request)
        session, persona = http.demo_cookie(request, box.world)
        operation = form.pop("operation", "")
        reason = form.pop("reason", "").strip() or None

        def act(trail: Trail) -> tuple[Any, list[Entry], dict[str, int]]:
            done = box.attempt(persona, operation, form, session=f"s-{session[:8]}", reason=reason)
            entries = [trail.get(i) for i in done.indices]
            return done, entries, box.counters(trail)

        done, entries, counters = await self.call(act)
        self.pulse.fire()
        if not http.wants_json(request):
            return RedirectResponse(f"{http.base(request)}/try", 303)
        decision = done.decision
        return JSONResponse({
            "outcome": decision.outcome, "message": decision.message, "indices": done.indices,
            "entries": [self.item(request, e, box.seeded) for e in reversed(entries)], "counters": counters,
            "state_html": self.fragment("_world.html", world=box.world, base=http.base(request)),
            "persona_html": self.fragment("_persona.html", persona=box.world.people[persona],
                                          permissions=pretend.PERMISSIONS),
        })  # fmt: skip

    async def reset(self, request: Request) -> Response:
        viewer = await self.who(request)
        http.same_origin(request)
        self.throttle(request, viewer)
        box = self.sandbox
        await run_in_threadpool(box.reset)
        self.pulse.fire()
        if http.wants_json(request):
            return JSONResponse({"generation": box.generation, "size": box.seeded})
        return RedirectResponse(f"{http.base(request)}/try", 303)

    async def tamper(self, request: Request) -> Response:
        viewer = await self.who(request)
        http.same_origin(request)
        self.throttle(request, viewer)
        box = self.sandbox
        form = await http.read_form(request)
        index = http.parse_index(form["index"]) if form.get("index") else None
        done = await run_in_threadpool(box.tamper, index)
        url = f"{http.base(request)}/entry/{done.index}"
        if http.wants_json(request):
            return JSONResponse({"index": done.index, "message": done.message, "entry_url": url})
        return RedirectResponse(url, 303)

    async def console(self, request: Request) -> Response:
        viewer = await self.who(request)
        try:
            wanted = search.parse(request.query_params)
        except ValidationError as exc:
            empty = search.Search({})
            return self.render(request, "console.html", 400, viewer=viewer, search=empty, form=request.query_params,
                               entries=[], next_cursor=None, error=exc)  # fmt: skip
        entries, cursor = await self.call(search.run, wanted)
        await self.looked(request, viewer, "audit.search", filters=wanted.filters)
        return self.render(request, "console.html", viewer=viewer, search=wanted, form=request.query_params,
                           entries=entries, next_cursor=cursor, error=None)  # fmt: skip

    async def export(self, request: Request) -> Response:
        viewer = await self.who(request, "audit")
        kind = request.query_params.get("format", "jsonl")
        if kind not in search.EXPORTS:
            raise ValidationError("format", "must be jsonl or csv", kind)
        wanted = search.parse(request.query_params)
        await self.looked(request, viewer, "audit.export", filters=wanted.filters, format=kind)
        ui = self

        async def chunks() -> AsyncIterator[bytes]:
            if kind == "csv":
                yield search.csv_header()
            after: int | None = None
            while True:
                entries, after = await ui.call(search.export_pages, wanted, after)
                yield search.jsonl(entries) if kind == "jsonl" else search.csv_rows(entries)
                if after is None:
                    return

        disposition = http.attachment(search.export_name(wanted, kind))
        return StreamingResponse(chunks(), media_type=search.EXPORTS[kind],
                                 headers={"Content-Disposition": disposition})  # fmt: skip

    async def timeline(self, request: Request) -> Response:
        viewer = await self.who(request)
        given = request.query_params.get("target", "")
        wanted = search.parse({"target": given})
        if "target" not in wanted.filters:
            raise ValidationError("target", "is required: type:id, such as customer:c-1042", given)
        target = wanted.filters["target"]
        entries = await self.call(lambda trail: trail.history(target, limit=1000))
        await self.looked(request, viewer, "audit.timeline", target=target)
        name = next((t.get("name") for e in entries for t in e.targets if present.target(t) == target), None)
        return self.render(request, "timeline.html", viewer=viewer, target=target, name=name, entries=entries)

    async def entry(self, request: Request, index: str) -> Response:
        viewer = await self.who(request)
        number = http.parse_index(index)

        def read(trail: Trail) -> tuple[Entry, proof.EntryCheck]:
            return trail.get(number), proof.check_entry(trail, number, self.key)

        found, check = await self.call(read)
        await self.looked(request, viewer, "audit.view", index=number)
        return self.render(request, "entry.html", viewer=viewer, e=found, check=check)

    async def bundle(self, request: Request, index: str) -> Response:
        viewer = await self.who(request)
        number = http.parse_index(index)
        made = await self.call(lambda trail: trail.prove(number))
        await self.looked(request, viewer, "audit.prove", index=number)
        headers = {"Content-Disposition": http.attachment(f"graven-entry-{number}.bundle.json")}
        return JSONResponse(made, headers=headers)

    async def verify(self, request: Request) -> Response:
        viewer = await self.who(request, "audit")
        http.same_origin(request)
        self.throttle(request, viewer)
        report = await self.call(lambda trail: trail.verify(self.key))
        await self.looked(request, viewer, "audit.verify", ok=report.ok)
        result = report.to_json()
        if report.first_bad_index is not None:
            result["entry_url"] = f"{http.base(request)}/entry/{report.first_bad_index}"
        if http.wants_json(request):
            return JSONResponse(result)
        return self.render(request, "verify.html", viewer=viewer, report=result)

    async def tail(self, request: Request) -> Response:
        viewer = await self.who(request)

        def read(trail: Trail) -> tuple[list[Entry], int]:
            return trail.query(newest_first=True, limit=50).entries, trail.size

        entries, size = await self.call(read)
        await self.looked(request, viewer, "audit.tail")
        return self.render(request, "tail.html", viewer=viewer, entries=entries, after=size - 1,
                           generation=self.source.generation)  # fmt: skip

    async def events(self, request: Request) -> Response:
        await self.who(request)
        params = request.query_params
        given = request.headers.get("last-event-id") or params.get("after") or ""
        after = http.parse_cursor(given) if given else None
        generation = http.parse_cursor(params["generation"]) if params.get("generation") else None
        box = self.source if isinstance(self.source, Sandbox) else None
        if after is None:
            after = await self.call(lambda trail: trail.size) - 1

        def fetch_sync(trail: Trail, start: int) -> tuple[int, list[dict[str, Any]]]:
            entries = trail.query(after=start, limit=live.MAX_BATCH).entries if trail.size > start + 1 else []
            items = [self.item(request, e, box.seeded if box else None) for e in entries]
            if items and box is not None:
                items[-1]["counters"] = box.counters(trail)
            return self.source.generation, items

        async def fetch(start: int) -> tuple[int, list[dict[str, Any]]]:
            return await self.call(fetch_sync, start)

        body = live.stream(after, generation, fetch, self.pulse, request.is_disconnected, self.closing)
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(body, media_type="text/event-stream", headers=headers)

    async def forwarders(self, request: Request) -> Response:
        """Each forwarder of graven.toml: cursor, lag, last error, dead letters (auditors and admins)."""
        viewer = await self.who(request, "audit")
        rows = await self.call(forwarder_status)
        await self.looked(request, viewer, "audit.forwarders.read")
        return self.render(request, "forwarders.html", viewer=viewer, rows=rows)

    async def how(self, request: Request) -> Response:
        viewer = await self.who(request)
        preferred = STORY_CUSTOMER if self.source.demo else None
        shown = await self.call(explain.approaches, preferred)
        return self.render(
            request, "how.html", viewer=viewer, components=explain.COMPONENTS, layouts=explain.LAYOUTS, shown=shown
        )
