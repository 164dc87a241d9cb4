"""OpenTelemetry: the active span's trace and span ids go into every entry's context by themselves."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, Tracer, use_span

import graven
from graven.trail import Trail


@pytest.fixture
def traced() -> Iterator[tuple[Tracer, InMemorySpanExporter]]:
    """A real SDK tracer whose finished spans land in memory (the global provider is left alone)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("graven-tests"), exporter
    provider.shutdown()


def ids_of(trail: Trail, index: int) -> tuple[str, str]:
    context = trail.get(index).get("context")
    return context["trace_id"], context["span_id"]


class TestSpanIds:
    def test_entry_inside_a_span_names_it(self, trail: Trail, traced: tuple[Tracer, InMemorySpanExporter]) -> None:
        """The trace and span ids of the exported span are the entry's, in their hex forms."""
        tracer, exporter = traced
        with tracer.start_as_current_span("checkout"):
            index = trail.record(action="order.pay", actor="u-1")
        (span,) = exporter.get_finished_spans()
        assert span.context is not None
        assert (format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")) == ids_of(trail, index)

    def test_nested_span_is_the_one_named(self, trail: Trail, traced: tuple[Tracer, InMemorySpanExporter]) -> None:
        """Inside a child span the entry names the child, under the same trace."""
        tracer, exporter = traced
        with tracer.start_as_current_span("request"), tracer.start_as_current_span("db"):
            index = trail.record(action="order.pay", actor="u-1")
        child, parent = exporter.get_finished_spans()
        assert child.context is not None
        assert parent.context is not None
        trace_id, span_id = ids_of(trail, index)
        assert format(parent.context.trace_id, "032x") == trace_id
        assert format(child.context.span_id, "016x") == span_id

    def test_no_span_no_ids(self, trail: Trail) -> None:
        """Outside any span (and with no other context) the entry has no context at all."""
        index = trail.record(action="order.pay", actor={"type": "user", "id": "u-1"})
        assert trail.get(index).get("context") is None

    def test_invalid_span_is_ignored(self, trail: Trail) -> None:
        """A span with an invalid (all-zero) context adds nothing."""
        with use_span(NonRecordingSpan(SpanContext(0, 0, is_remote=False))):
            index = trail.record(action="order.pay", actor="u-1")
        assert "trace_id" not in (trail.get(index).get("context") or {})

    def test_stated_ids_win(self, trail: Trail) -> None:
        """Ids given by the caller (in trail.context or the event) are not replaced by the span's."""
        span = NonRecordingSpan(SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1)))
        with use_span(span), trail.context(actor="u-1", trace_id="from-context"):
            first = trail.record(action="order.pay")
            second = trail.record(action="order.pay", context={"span_id": "from-event"})
        assert ("from-context", format(0xDEF, "016x")) == ids_of(trail, first)
        assert ("from-context", "from-event") == ids_of(trail, second)

    def test_bad_context_is_still_named_by_validation(
        self, trail: Trail, traced: tuple[Tracer, InMemorySpanExporter]
    ) -> None:
        """Inside a span, a context that is not an object is refused by validation, not by a crash."""
        tracer, _ = traced
        for scope in ({}, {"actor": "u-1"}):
            with tracer.start_as_current_span("work"), trail.context(**scope):
                with pytest.raises(graven.ValidationError) as refused:
                    trail.record(action="order.pay", actor="u-1", context="not an object")
                assert "context" == refused.value.field
        assert 0 == trail.size

    def test_ids_join_the_request_context(self, trail: Trail, traced: tuple[Tracer, InMemorySpanExporter]) -> None:
        """The span's ids sit beside the request id that trail.context set."""
        tracer, _ = traced
        with trail.context(actor="u-1", request_id="req-9"), tracer.start_as_current_span("work"):
            index = trail.record(action="order.pay")
        context = trail.get(index).get("context")
        assert {"request_id", "trace_id", "span_id"} == set(context)


class TestAcrossThreadsAndTasks:
    def test_pool_work_keeps_the_span(self, trail: Trail, traced: tuple[Tracer, InMemorySpanExporter]) -> None:
        """carry() takes the span to a worker thread as well as the actor."""
        tracer, exporter = traced
        with (
            tracer.start_as_current_span("batch"),
            trail.context(actor="u-1"),
            graven.ContextThreadPoolExecutor(1) as pool,
        ):
            index = pool.submit(trail.record, action="order.pay").result()
        (span,) = exporter.get_finished_spans()
        assert span.context is not None
        assert format(span.context.span_id, "016x") == ids_of(trail, index)[1]

    def test_arecord_in_a_span(self, trail: Trail, traced: tuple[Tracer, InMemorySpanExporter]) -> None:
        """An asynchronous record inside a span names the span too."""
        tracer, exporter = traced

        async def main() -> int:
            with tracer.start_as_current_span("async-work"):
                return await trail.arecord(action="order.pay", actor="u-1")

        index = asyncio.run(main())
        (span,) = exporter.get_finished_spans()
        assert span.context is not None
        assert format(span.context.span_id, "016x") == ids_of(trail, index)[1]
