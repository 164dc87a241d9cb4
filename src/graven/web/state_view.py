"""The "state at this moment" page: a target's fields replayed from the log up to an entry or a time.

Reached from the timeline (each moment) and the entry page (each target). Reading it is recorded
like any other read ("who looked"); the replayed entries can be downloaded as a state bundle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from graven.core.state import as_of_time
from graven.errors import ValidationError
from graven.web import http, search

if TYPE_CHECKING:
    from graven.web.app import _UI


def _wanted(request: Request) -> tuple[str, int | None, str | None]:
    """The target, entry index and moment asked for, checked (a bad one is a 400 naming it)."""
    given = request.query_params.get("target", "")
    parsed = search.parse({"target": given})
    if "target" not in parsed.filters:
        raise ValidationError("target", "is required: type:id, such as customer:c-1042", given)
    index = request.query_params.get("at_index")
    moment = request.query_params.get("as_of") or None
    return (
        parsed.filters["target"],
        http.parse_index(index) if index else None,
        as_of_time(moment) if moment is not None else None,
    )


async def page(ui: _UI, request: Request) -> Response:
    viewer = await ui.who(request)
    target, index, moment = _wanted(request)
    state = await ui.call(lambda trail: trail.state(target, as_of=moment, at_index=index))
    await ui.looked(request, viewer, "audit.state", target=target, at_index=index, as_of=moment)
    query = {"target": target, **({"at_index": index} if index is not None else {}),
             **({"as_of": moment} if moment else {})}  # fmt: skip
    return ui.render(request, "state.html", viewer=viewer, target=target, state=state, index=index, moment=moment,
                     query=query)  # fmt: skip


async def bundle(ui: _UI, request: Request) -> Response:
    viewer = await ui.who(request)
    target, index, moment = _wanted(request)
    made = await ui.call(lambda trail: trail.prove_state(target, as_of=moment, at_index=index))
    await ui.looked(request, viewer, "audit.prove", target=target, at_index=index, as_of=moment)
    name = f"graven-state-{target.replace(':', '-')}" + (f"-at-{index}" if index is not None else "")
    return JSONResponse(made, headers={"Content-Disposition": http.attachment(f"{name}.bundle.json")})
