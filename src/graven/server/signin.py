"""Signing people in and out: the sign-in page, ``POST /auth/login`` (form or JSON), ``POST
/auth/logout`` and ``GET /auth/me``.

The session cookie is HttpOnly, SameSite=Strict, Secure when the request came over TLS, and names
a server-side session that expires (``session_ttl``). Failed sign-ins count against the user name
and the client IP (429 past the limit); every attempt is a ``session.login`` entry.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from graven.errors import ValidationError
from graven.server import schemas
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
    require,
    state,
    throttle,
)
from graven.server.limits import json_body

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
router = APIRouter(tags=["sign-in"])
_LOGIN = {"schema": {"$ref": "#/components/schemas/LoginIn"}}
_LOGIN_BODY = {"required": True, "content": {"application/json": _LOGIN, "application/x-www-form-urlencoded": _LOGIN}}
_FORM = ("application/x-www-form-urlencoded", "multipart/form-data")


def _local(path: str | None, default: str) -> str:
    """Only a path on this site may be a redirect target (no //host, no scheme)."""
    if path and path.startswith("/") and not path.startswith("//") and "\\" not in path and "\n" not in path:
        return path
    return default


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
async def login_page(request: Request, next: Annotated[str | None, Query(max_length=2000)] = None) -> HTMLResponse:
    principal = await current_principal(request)
    token = await csrf_token(request)
    context = {"principal": principal, "csrf_token": token, "next": _local(next, ""), "error": None, "username": ""}
    return templates.TemplateResponse(request, "login.html", context)


@router.post("/auth/login", response_model=schemas.Me, summary="Sign in with a user name and password",
             openapi_extra={"requestBody": _LOGIN_BODY}, responses={
                 303: {"description": "a form sign-in: on to `next`"},
                 401: {"description": "wrong user name or password (a form gets the page again)", "content": {
                     "application/json": {"schema": {"$ref": "#/components/schemas/Error"}},
                     "text/html": {"schema": {"type": "string"}}}}})  # fmt: skip
async def login(request: Request) -> Response:
    """Sets the session cookie. A form post is redirected (303) to ``next``; JSON gets the session's
    CSRF token back."""
    st = state(request)
    is_form = request.headers.get("content-type", "").startswith(_FORM)
    if is_form:
        form = await request.form()
        fields: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
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
    subjects = [("ip", ip or "unknown"), ("user", username[:200])]
    await throttle(request, subjects)
    signed = await asyncio.to_thread(st.accounts.sign_in, username, password, ip=ip, user_agent=agent)
    if signed is None:
        st.limiter.failed(subjects)
        message = "wrong user name or password"
        if is_form:
            context = {"principal": None, "csrf_token": None, "next": _local(fields.get("next"), ""),
                       "error": message, "username": username[:200]}  # fmt: skip
            return templates.TemplateResponse(request, "login.html", context, status_code=401)
        raise ApiError(401, "login_failed", message)
    user, token = signed
    expires = (await asyncio.to_thread(st.accounts.session_user, token) or (None, None))[0]
    if is_form:
        response: Response = RedirectResponse(_local(fields.get("next"), st.config.after_login), status_code=303)
    else:
        response = json_response({"kind": "user", "name": user.name, "role": user.role,
                                  "csrf_token": st.accounts.csrf_token(token),
                                  "expires_at": expires.expires_at if expires else None})  # fmt: skip
    response.set_cookie(SESSION_COOKIE, token, max_age=int(st.config.session_ttl.total_seconds()), path="/",
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")  # fmt: skip
    return response


@router.post("/auth/logout", response_model=schemas.Ok, summary="End the signed-in session",
             responses={303: {"description": "a form sign-out: to the sign-in page"}})
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
