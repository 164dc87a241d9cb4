"""``GET /api/v1/docs``: the API's reference, rendered on the server from its OpenAPI document.

The page needs no script and loads nothing but the UI's own stylesheet, so it passes the same
Content-Security-Policy as every other page (``default-src 'self'``): nothing is fetched from
another host. Machines read ``/api/v1/openapi.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

DOCS = "/api/v1/docs"
OPENAPI = "/api/v1/openapi.json"
METHODS = ("get", "post", "put", "patch", "delete")
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def kind(schema: dict[str, Any] | None) -> str:
    """A schema in a few words: ``Entry``, ``array of Entry``, ``integer | null``."""
    if not schema:
        return "any"
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return " | ".join(kind(part) for part in schema[key])
    if schema.get("type") == "array":
        return f"array of {kind(schema.get('items'))}"
    if "enum" in schema:
        return " | ".join(orjson.dumps(value).decode() for value in schema["enum"])
    return str(schema.get("type") or "object")


def operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every operation of the document, grouped by its first tag in the order they appear."""
    found: list[dict[str, Any]] = []
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            if method not in item:
                continue
            op = item[method]
            body = (op.get("requestBody") or {}).get("content", {})
            found.append({
                "id": f"{method}-{path}".replace("/", "-").replace("{", "").replace("}", ""),
                "method": method.upper(), "path": path, "tag": (op.get("tags") or ["other"])[0],
                "summary": op.get("summary") or "", "description": op.get("description") or "",
                "parameters": [
                    {"name": p["name"], "in": p["in"], "required": p.get("required", False),
                     "kind": kind(p.get("schema")), "description": p.get("description") or ""}
                    for p in op.get("parameters", [])
                ],
                "body": [(media, kind(content.get("schema"))) for media, content in body.items()],
                "responses": [(code, r.get("description") or "") for code, r in op.get("responses", {}).items()],
            })  # fmt: skip
    tags = list(dict.fromkeys(op["tag"] for op in found))
    return sorted(found, key=lambda op: tags.index(op["tag"]))


def install(app: FastAPI) -> None:
    """Serve the reference at :data:`DOCS` (outside the OpenAPI document itself)."""

    async def docs(request: Request) -> HTMLResponse:
        document = app.openapi()
        schemas = document.get("components", {}).get("schemas", {})
        shown = {name: orjson.dumps(schema, option=orjson.OPT_INDENT_2).decode() for name, schema in schemas.items()}
        context = {"info": document.get("info", {}), "operations": operations(document), "schemas": shown,
                   "openapi": OPENAPI}  # fmt: skip
        return templates.TemplateResponse(request, "api_docs.html", context)

    app.add_api_route(DOCS, docs, methods=["GET"], include_in_schema=False, response_class=HTMLResponse)
