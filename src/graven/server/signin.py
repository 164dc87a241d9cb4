"""Signing people in and out: the sign-in page, ``POST /auth/login`` (form or JSON), ``POST
/auth/logout`` and ``GET /auth/me``.

The session cookie is HttpOnly, SameSite=Strict, Secure when the request came over TLS, and names
a server-side session that expires (``session_ttl``). ``POST /auth/login`` takes JSON
(``Content-Type: application/json``, which a page on another site cannot send without CORS) or
the sign-in page's own form, which MUST come from this origin (``Sec-Fetch-Site``, else
``Origin``) and carry the page's pre-session token; anything else is refused (415, 403) before a
password is looked at. Failed sign-ins count against the client's address and the (user,
address) pair, which are throttled (429), and against the user name from all addresses, which
only slows that user's sign-ins by ``SLOW_SIGN_IN`` seconds and is never refused, so nobody can
lock a user out. Every attempt is a ``session.login`` entry.
"""

from __future__ import annotations

import asyncio
import hmac
import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from graven.core.model import safe_identifier
from graven.errors import ValidationError
from graven.server import credentials, schemas
from graven.server.accounts.service import By
from graven.server.api import json_response
from graven.server.auth import (
    SESSION_COOKIE,
    ApiError,
    Principal,
    check_csrf,
    client_of,
    csrf_token,
    current_principal,
    deny_anonymous,
    failed,
    require,
    state,
    throttle,
)
from graven.server.limits import address_subject, json_body

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
router = APIRouter(tags=["sign-in"])
_LOGIN = {"schema": {"$ref": "#/components/schemas/LoginIn"}}
_LOGIN_BODY = {"required": True, "content": {"application/json": _LOGIN, "application/x-www-form-urlencoded": _LOGIN}}
_FORM = ("application/x-www-form-urlencoded", "multipart/form-data")
LOGIN_COOKIE = "graven_login"  # the sign-in page's pre-session cookie
LOGIN_FIELD = "login_token"  # its HMAC, a hidden field of the page's form
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")
SLOW_SIGN_IN = 1.0  # seconds added to each sign-in of a user whose failures (all addresses) passed the limit


def _local(path: str | None, default: str) -> str:
    """Only a path on this site may be a redirect target (no //host, no scheme)."""
    if path and path.startswith("/") and not path.startswith("//") and "\\" not in path and "\n" not in path:
        return path
    return default


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


def _same_origin(request: Request) -> bool | None:
    """Whether the browser says the request comes from this site: ``Sec-Fetch-Site`` (computed by the
    browser, right behind any proxy) when sent, else ``Origin`` against the Host; None without either."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site.strip().lower() in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return None
    parts = urlsplit(origin.strip())
    host = request.headers.get("host", "").strip().lower()
    return parts.scheme in ("http", "https") and bool(host) and _netloc(parts.scheme, parts.netloc) == _netloc(
        request.url.scheme, host)  # fmt: skip


def _netloc(scheme: str, netloc: str) -> str:
    default = {"http": ":80", "https": ":443"}.get(scheme, "")
    netloc = netloc.lower()
    return netloc.removesuffix(default) if default and netloc.endswith(default) else netloc


def _page_token(request: Request, cookie: str) -> str:
    return credentials.keyed_hash(state(request).config.secret, "login-form", cookie)


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
async def login_page(request: Request, next: Annotated[str | None, Query(max_length=2000)] = None) -> HTMLResponse:
    principal = await current_principal(request)
    token = await csrf_token(request)
    return _sign_in_page(request, principal=principal, csrf_token=token, next=_local(next, ""))


def _sign_in_page(request: Request, *, status: int = 200, **context: Any) -> HTMLResponse:
    """The sign-in page with its pre-session token: the HMAC of a random cookie issued with the page
    (kept while the browser keeps it), which a form post MUST send back beside that cookie."""
    cookie = request.cookies.get(LOGIN_COOKIE) or ""
    fresh = not _COOKIE_VALUE.fullmatch(cookie)
    if fresh:
        cookie = credentials.new_token()
    context = {"principal": None, "csrf_token": None, "next": "", "error": None, "username": "", **context,
               "login_token": _page_token(request, cookie)}  # fmt: skip
    response = templates.TemplateResponse(request, "login.html", context, status_code=status)
    if fresh:
        response.set_cookie(LOGIN_COOKIE, cookie, path="/", httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")  # fmt: skip
    return response


async def _check_form_origin(request: Request, fields: dict[str, Any]) -> None:
    """Refuse (403, recorded) a sign-in form that is not this site's own page: it MUST come from this
    origin and carry the page's pre-session token beside its cookie (no login CSRF)."""
    same = _same_origin(request)
    if same is not True:
        why = "comes from another site" if same is False else "says nothing of where it comes from (no Origin)"
        await deny_anonymous(request, 403, "cross_site",
                             f"a sign-in form must be posted from this site's /login page; this one {why}")  # fmt: skip
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    given = fields.get(LOGIN_FIELD)
    if not (isinstance(given, str) and _COOKIE_VALUE.fullmatch(cookie)
            and hmac.compare_digest(given.encode(), _page_token(request, cookie).encode())):  # fmt: skip
        await deny_anonymous(request, 403, "csrf",
                             f"missing or wrong sign-in token: post the form of this site's /login page (its "
                             f"{LOGIN_FIELD} field and {LOGIN_COOKIE} cookie); reload the page and retry")  # fmt: skip


@router.post("/auth/login", response_model=schemas.Me, summary="Sign in with a user name and password",
             openapi_extra={"requestBody": _LOGIN_BODY}, responses={
                 303: {"description": "a form sign-in: on to `next`"},
                 401: {"description": "wrong user name or password (a form gets the page again)", "content": {
                     "application/json": {"schema": {"$ref": "#/components/schemas/Error"}},
                     "text/html": {"schema": {"type": "string"}}}},
                 415: {"description": "neither JSON nor the sign-in page's form", "model": schemas.Error}})  # fmt: skip
async def login(request: Request) -> Response:
    """Sets the session cookie. JSON (``Content-Type: application/json``) gets the session's CSRF token
    back. A form post (from the /login page only: same origin and its pre-session token) is
    redirected (303) to ``next``. Anything else is 415; a cross-site post is 403."""
    st = state(request)
    media = _media_type(request)
    is_form = media in _FORM
    if not is_form and media != "application/json":
        raise ApiError(415, "unsupported_media_type", "POST /auth/login takes Content-Type: application/json "
                       f"(or the /login page's form); got {media or 'no Content-Type'}",
                       field="Content-Type", given=media or None)  # fmt: skip
    if _same_origin(request) is False:
        await deny_anonymous(request, 403, "cross_site", "a sign-in from another site is refused")
    if is_form:
        form = await request.form()
        fields: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
        await _check_form_origin(request, fields)
    else:
        body = json_body(await request.body(), 4)
        if type(body) is not dict:
            raise ValidationError("body", 'must be {"username": ..., "password": ...} or a form', body)
        fields = body
    username, password = fields.get("username"), fields.get("password")
    for name, value in (("username", username), ("password", password)):
        if not isinstance(value, str) or not value:
            raise ValidationError(name, "is required (a non-empty string)", value if value is not None else ...)
    assert isinstance(username, str)
    assert isinstance(password, str)
    current = await current_principal(request)
    if current is not None and current.session_token is not None:
        await check_csrf(request, current)  # signing in again over a live session is a change too
    ip, agent = client_of(request)
    address = address_subject(ip)
    user = safe_identifier(username[:200])  # recorded when throttled: never a refused character
    await throttle(request, [address, ("user_ip", user, address[1])])
    if st.limiter.over(("user", user)):  # guessed at from many addresses: slower, never locked
        await asyncio.sleep(SLOW_SIGN_IN)
    signed = await asyncio.to_thread(st.accounts.sign_in, username, password, ip=ip, user_agent=agent)
    if signed is None:
        await failed(request, [address, ("user_ip", user, address[1])], watch=[("user", user)])
        message = "wrong user name or password"
        if is_form:
            return _sign_in_page(request, status=401, next=_local(fields.get("next"), ""), error=message,
                                 username=user)  # fmt: skip
        raise ApiError(401, "login_failed", message)
    user_row, token = signed
    expires = (await asyncio.to_thread(st.accounts.session_user, token) or (None, None))[0]
    if is_form:
        response: Response = RedirectResponse(_local(fields.get("next"), st.config.after_login), status_code=303)
    else:
        response = json_response({"kind": "user", "name": user_row.name, "role": user_row.role,
                                  "csrf_token": st.accounts.csrf_token(token),
                                  "expires_at": expires.expires_at if expires else None})  # fmt: skip
    response.set_cookie(SESSION_COOKIE, token, max_age=int(st.config.session_ttl.total_seconds()), path="/",
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")  # fmt: skip
    return response


@router.post(
    "/auth/logout",
    response_model=schemas.Ok,
    summary="End the signed-in session",
    responses={303: {"description": "a form sign-out: to the sign-in page"}},
)
async def logout(request: Request) -> Response:
    """Ends the session of the cookie (which needs its CSRF token); without one there is nothing to end."""
    st = state(request)
    principal = await current_principal(request)  # checks the CSRF token of a live session
    if principal is not None and principal.session_token is not None:
        await asyncio.to_thread(st.accounts.sign_out, principal.session_token, by=By(principal.actor, "web"))
    is_form = request.headers.get("content-type", "").startswith(_FORM)
    response: Response = RedirectResponse("/login", status_code=303) if is_form else json_response({"ok": True})
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")  # fmt: skip
    return response


@router.get("/auth/me", response_model=schemas.Me, summary="Who this request is authenticated as")
async def me(request: Request, who: Annotated[Principal, Depends(require("any"))]) -> Response:
    token = await csrf_token(request)
    return json_response({"kind": who.kind, "name": who.name, "role": who.role, "csrf_token": token,
                          "expires_at": who.expires_at})  # fmt: skip
