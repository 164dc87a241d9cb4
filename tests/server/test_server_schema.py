"""Property-based run of the OpenAPI document against the app (schemathesis): no 5xx, and every
response's status, content type, headers and body are the ones the document describes."""

from __future__ import annotations

import time
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks

from tests.server.server_harness import Served

CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_headers_conformance, checks.response_schema_conformance]  # fmt: skip
EXAMPLES = 30  # per operation; the whole run stays well under 60 s
BUDGET_S = 60


def _check(operation: Any, headers: dict[str, str]) -> None:
    """Generated cases of one operation, each sent with ``headers`` and checked against the document."""

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def run(case: Any) -> None:
        response = case.call(headers=headers)
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()


@pytest.mark.slow
def test_openapi_document_holds(serve_log: Any) -> None:
    """Every operation, as admin (and ingest as a writer), with generated input: no 5xx, nothing off-schema.

    The live tail is left out: it streams until the client leaves; tests/server/test_server_api.py covers it.
    """
    served: Served = serve_log(auth_failure_limit=100_000)
    served.client.post("/api/v1/events", json=[{"action": "a.b", "actor": "u-1"}] * 1, headers=served.auth("writer"))
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", served.app)
    started = time.monotonic()
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/api/v1/tail":
            continue
        role = "writer" if operation.path == "/api/v1/events" else "admin"
        _check(operation, served.auth(role))
        ran += 1
    assert 17 <= ran
    assert time.monotonic() - started < BUDGET_S
    assert served.trail.verify().ok
