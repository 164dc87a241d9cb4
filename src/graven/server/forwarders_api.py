"""``GET /api/v1/forwarders`` (admin): each forwarder of graven.toml with its cursor, lag, last
error and dead letters, as ``graven forward status --json`` prints them."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from graven.forward.runner import configured_status
from graven.server.api import json_response
from graven.server.auth import Principal, require, state

Admin = Annotated[Principal, Depends(require("admin"))]

router = APIRouter(prefix="/api/v1", tags=["admin"])


@router.get("/forwarders", summary="Every forwarder: cursor, lag (entries and seconds), last error, dead letters")
async def list_forwarders(request: Request, who: Admin) -> Response:
    return json_response(await asyncio.to_thread(configured_status, state(request).trail))
