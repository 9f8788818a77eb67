"""Prometheus exposition of the monitor's aggregates, read at scrape time so it never drifts from GetStats."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from inferscale.v1 import common_pb2
from services.monitor.aggregates import LATENCY_BUCKETS_SECONDS, Aggregates, Histogram


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    bounds = [*(str(b) for b in LATENCY_BUCKETS_SECONDS), "+Inf"]
    return list(zip(bounds, accumulate(histogram.counts), strict=True))


class AggregatesCollector(Collector):
    """Turns an Aggregates into metric families named ``inferscale_*``."""

    def __init__(self, aggregates: Aggregates) -> None:
        self._aggregates = aggregates

    def collect(self) -> Iterator[Metric]:
        a = self._aggregates
        yield CounterMetricFamily("inferscale_events_recorded", "Events the monitor recorded.", value=a.events_recorded)
        yield CounterMetricFamily(
            "inferscale_events_dropped", "Events the services dropped before delivery.", value=a.events_dropped
        )
        requests = CounterMetricFamily("inferscale_requests", "Client requests finished.", labels=["strategy"])
        errors = CounterMetricFamily("inferscale_request_errors", "Client requests that failed.", labels=["strategy"])
        cost = CounterMetricFamily(
            "inferscale_request_compute_cost", "Compute spent on requests, relative units.", labels=["strategy"]
        )
        latency = HistogramMetricFamily(
            "inferscale_request_latency_seconds", "Request latency in the router.", labels=["strategy"]
        )
        for strategy, c in sorted(a.strategies.items()):
            name = common_pb2.Strategy.Name(strategy)
            requests.add_metric([name], c.requests)
            errors.add_metric([name], c.errors)
            cost.add_metric([name], c.cost)
            latency.add_metric([name], _buckets(c.latency), c.latency.total)
        yield from (requests, errors, cost, latency)
        labels = ["model", "version", "tier"]
        steps = CounterMetricFamily("inferscale_steps", "Plan steps a model ran, by decision.", labels=[*labels, "decision"])
        step_cost = CounterMetricFamily("inferscale_step_compute_cost", "Compute the steps cost, relative units.", labels=labels)
        tokens = CounterMetricFamily(
            "inferscale_model_tokens",
            "Tokens a text model read (input) and generated (output) in the steps Triton ran.",
            labels=[*labels, "direction"],
        )
        confidence = GaugeMetricFamily("inferscale_step_mean_confidence", "Mean confidence of a model's answers.", labels=labels)
        step_latency = HistogramMetricFamily("inferscale_step_latency_seconds", "Step latency, Triton call included.", labels=labels)
        accuracy = GaugeMetricFamily(
            "inferscale_model_accuracy", "Share of a model's feedback-scored answers that were right.", labels=labels
        )
        calibration_error = GaugeMetricFamily(
            "inferscale_model_expected_calibration_error", "Expected calibration error of a model's confidence.", labels=labels
        )
        for (model, version), c in sorted(a.models.items()):
            key = [model, str(version), str(c.tier)]
            steps.add_metric([*key, "DECISION_ACCEPT"], c.accepted)
            steps.add_metric([*key, "DECISION_ESCALATE"], c.escalated)
            step_cost.add_metric(key, c.cost)
            if c.input_tokens or c.output_tokens:
                tokens.add_metric([*key, "input"], c.input_tokens)
                tokens.add_metric([*key, "output"], c.output_tokens)
            confidence.add_metric(key, c.confidence_sum / c.steps if c.steps else 0.0)
            step_latency.add_metric(key, _buckets(c.latency), c.latency.total)
            if c.scored:
                accuracy.add_metric(key, c.accuracy)
                calibration_error.add_metric(key, c.calibration_error())
        yield from (steps, step_cost, tokens, confidence, step_latency, accuracy, calibration_error)
        lookups = CounterMetricFamily("inferscale_cache_lookups", "Cache lookups, by level and result.", labels=["level", "result"])
        audits = CounterMetricFamily(
            "inferscale_cache_audits", "Cache hits also recomputed to check them, by level and outcome.", labels=["level", "result"]
        )
        entries = GaugeMetricFamily("inferscale_cache_entries", "Entries held, over cache replicas.", labels=["level"])
        held = GaugeMetricFamily("inferscale_cache_bytes", "Bytes held, over cache replicas.", labels=["level"])
        evictions = CounterMetricFamily("inferscale_cache_evictions", "Entries evicted to stay within bounds.", labels=["level"])
        saved = CounterMetricFamily("inferscale_cache_compute_saved", "Compute units that cache hits saved.", labels=["level"])
        for s in a.cache_stats():
            name = common_pb2.CacheLevel.Name(s.level)
            lookups.add_metric([name, "hit"], s.hits)
            lookups.add_metric([name, "miss"], s.misses)
            audits.add_metric([name, "agreed"], s.audited - s.false_hits)
            audits.add_metric([name, "false_hit"], s.false_hits)
            entries.add_metric([name], s.entries)
            held.add_metric([name], s.bytes)
            evictions.add_metric([name], s.evictions)
            saved.add_metric([name], s.compute_saved)
        yield from (lookups, audits, entries, held, evictions, saved)
        triton_labels = ["model", "version"]
        triton_compute = CounterMetricFamily(
            "inferscale_triton_compute_seconds", "Compute time Triton itself measured per model version, over replicas.", labels=triton_labels
        )
        triton_inferences = CounterMetricFamily(
            "inferscale_triton_inferences", "Successful inferences Triton counted per model version, over replicas.", labels=triton_labels
        )
        for t in a.triton_models.values():
            key = [t.model.name, str(t.model.version)]
            triton_compute.add_metric(key, t.compute_seconds)
            triton_inferences.add_metric(key, t.inference_count)
        yield from (triton_compute, triton_inferences)
