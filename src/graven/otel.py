"""OpenTelemetry: the ids of the span active where an entry is recorded, for the entry's context.

Nothing to configure: when ``opentelemetry-api`` is installed (``graven[otel]``) and a valid span
is current, every entry recorded inside it gets ``context.trace_id`` (32 hex digits) and
``context.span_id`` (16 hex digits), the forms W3C Trace Context and the OpenTelemetry exporters
use, so an entry can be looked up beside its trace. Ids the caller states itself (in the event or
``trail.context``) win. Without the package this costs one failed import, once.
"""

from __future__ import annotations

from typing import Any

__all__ = ["span_ids"]

_trace: Any = None  # the opentelemetry.trace module once imported; False when it is not installed


def span_ids() -> dict[str, str] | None:
    """``{"trace_id": ..., "span_id": ...}`` of the current span, or None (no valid span, or no OpenTelemetry)."""
    global _trace
    if _trace is None:
        try:
            from opentelemetry import trace
        except ImportError:
            _trace = False
        else:
            _trace = trace
    if _trace is False:
        return None
    span = _trace.get_current_span().get_span_context()
    if not span.is_valid:
        return None
    return {"trace_id": format(span.trace_id, "032x"), "span_id": format(span.span_id, "016x")}
