"""Admin routes under /api/v1: API keys and users (the CLI's ``graven keys`` and ``graven users``)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from graven.server import schemas
from graven.server.accounts.service import By, key_json, user_json
from graven.server.api import json_response
from graven.server.auth import Principal, require, state

Admin = Annotated[Principal, Depends(require("admin"))]
Name = Annotated[str, Path(max_length=200)]

router = APIRouter(prefix="/api/v1", tags=["admin"])


@router.get("/keys", response_model=list[schemas.Key], summary="Every API key (never the keys themselves)")
async def list_keys(request: Request, who: Admin) -> Response:
    keys = await asyncio.to_thread(state(request).accounts.keys)
    return json_response([key_json(k) for k in keys])


@router.post("/keys", status_code=201, response_model=schemas.KeyCreated, summary="Create an API key (shown once)")
async def create_key(request: Request, who: Admin, body: schemas.KeyIn) -> Response:
    accounts = state(request).accounts
    key, text = await asyncio.to_thread(accounts.create_key, body.name, body.role, by=By(who.actor, who.source))
    return json_response({**key_json(key), "key": text}, 201)


@router.post("/keys/{key}/revoke", response_model=schemas.Key, summary="Revoke an API key by id or name")
async def revoke_key(request: Request, who: Admin, key: Name) -> Response:
    accounts = state(request).accounts
    revoked = await asyncio.to_thread(accounts.revoke_key, key, by=By(who.actor, who.source))
    return json_response(key_json(revoked))


@router.get("/users", response_model=list[schemas.User], summary="Every user")
async def list_users(request: Request, who: Admin) -> Response:
    users = await asyncio.to_thread(state(request).accounts.users)
    return json_response([user_json(u) for u in users])


@router.post("/users", status_code=201, response_model=schemas.User, summary="Add a user who signs in with a password")
async def add_user(request: Request, who: Admin, body: schemas.UserIn) -> Response:
    accounts = state(request).accounts
    user = await asyncio.to_thread(accounts.add_user, body.name, body.role, body.password, by=By(who.actor, who.source))
    return json_response(user_json(user), 201)


@router.post("/users/{name}/disable", response_model=schemas.User, summary="Disable a user and end their sessions")
async def disable_user(request: Request, who: Admin, name: Name) -> Response:
    accounts = state(request).accounts
    user = await asyncio.to_thread(accounts.disable_user, name, by=By(who.actor, who.source))
    return json_response(user_json(user))


@router.post("/users/{name}/password", response_model=schemas.Ok, summary="Set a user's password")
async def set_password(request: Request, who: Admin, name: Name, body: schemas.PasswordIn) -> Response:
    accounts = state(request).accounts
    await asyncio.to_thread(accounts.set_password, name, body.password, by=By(who.actor, who.source))
    return json_response({"ok": True})
