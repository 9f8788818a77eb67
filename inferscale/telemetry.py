"""OpenTelemetry for every service: a tracer provider, OTLP export and gRPC instrumentation, set up once.

Export follows the standard variables: spans leave the process only when
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set and
``OTEL_TRACES_EXPORTER`` is not ``none``; ``OTEL_EXPORTER_OTLP_PROTOCOL`` picks ``http/protobuf``
(the default, the protocol Triton speaks too) or ``grpc``. Sampling follows ``OTEL_TRACES_SAMPLER``.
``OTEL_SDK_DISABLED=true`` turns tracing off altogether: no provider and no gRPC instrumentation,
so spans are no-ops that cost nothing (benchmarks/router_overhead.py measured the instrumentation
alone, exporting nothing, at a measurable share of each hop).
"""

from __future__ import annotations

import os

import grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, GrpcAioInstrumentorServer
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

# Attribute keys of InferScale's own spans: a contract that dashboards are built on
# (docs/tracing.md lists them); change one only together with the docs.
ATTR_STRATEGY = "inferscale.strategy"
ATTR_TASK = "inferscale.task"
ATTR_TIER = "inferscale.tier"
ATTR_MODEL = "inferscale.model"
ATTR_MODEL_VERSION = "inferscale.model_version"
ATTR_CONFIDENCE = "inferscale.confidence"
ATTR_THRESHOLD = "inferscale.threshold"
ATTR_DECISION = "inferscale.decision"
ATTR_REASON = "inferscale.reason"
ATTR_COST = "inferscale.cost"
ATTR_CACHE_LEVEL = "inferscale.cache_level"
ATTR_CACHE_HIT = "inferscale.cache_hit"
ATTR_CLIENT_ID = "inferscale.client_id"
ATTR_POLICY_VERSION = "inferscale.policy_version"
ATTR_SEMANTIC_SIMILARITY = "inferscale.semantic_similarity"
ATTR_SEMANTIC_REJECTED = "inferscale.semantic_rejected"
ATTR_STEP_INDEX = "inferscale.step_index"
ATTR_REQUEST_ID = "inferscale.request_id"
ATTR_AGGREGATION = "inferscale.aggregation"
ATTR_VOTE_ENTROPY = "inferscale.vote_entropy"
ATTR_MEMBERS_FAILED = "inferscale.members_failed"
ATTR_SEARCH_ACTION = "inferscale.search_action"
ATTR_COMPLEXITY = "inferscale.complexity"

# Health probes, reflection and the background event batches are not part of any request's
# story. One pass over the method name: the instrumentation's composed filters
# (filters.any_of(filters.health_check(), ...)) split and compare it once per filter, which
# measured 4.6 µs a call against 0.14 µs, paid on every traced server and client call.
_UNTRACED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
_UNTRACED_METHODS = ("/RecordEvents", "/StreamEvents")


def is_traced(call_details: grpc.HandlerCallDetails | grpc.ClientCallDetails) -> bool:
    """The gRPC instrumentation's filter: whether a call (served or made) gets a span."""
    method = call_details.method
    if isinstance(method, bytes):
        method = method.decode()
    return not (method.startswith(_UNTRACED_PREFIXES) or method.endswith(_UNTRACED_METHODS))


def _otlp_exporter() -> SpanExporter | None:
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return None
    if not (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    ):
        return None
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpOTLPSpanExporter,
        )

        return HttpOTLPSpanExporter()
    raise ValueError(
        f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported; use 'grpc' or 'http/protobuf'"
    )


def setup_telemetry(service_name: str) -> TracerProvider:
    """Installs the global tracer provider for ``service_name`` and instruments gRPC servers and channels.

    Call it before any gRPC server or channel is created: the instrumentation wraps the
    constructors, so earlier channels would carry no trace context.
    """
    resource = Resource.create(
        {"service.name": service_name, "service.namespace": "inferscale"}
    )
    provider = TracerProvider(resource=resource)
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        # Returned for the caller's shutdown(), never installed: the global tracer stays a no-op.
        return provider
    exporter = _otlp_exporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    GrpcAioInstrumentorServer(filter_=is_traced).instrument()
    GrpcAioInstrumentorClient(filter_=is_traced).instrument()
    return provider


def current_trace_id() -> str:
    """Returns the current span's W3C trace id as 32 hex digits, or "" outside a sampled trace."""
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else ""
