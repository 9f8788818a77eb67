"""The monitor's pure aggregation of events and its Prometheus exposition of the same numbers."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from inferscale.v1 import cache_service_pb2, common_pb2, monitor_service_pb2
from services.monitor.aggregates import Aggregates
from services.monitor.metrics import AggregatesCollector


def step_event(model: str, tier: int, decision: int, confidence: float, cost: float) -> monitor_service_pb2.Event:
    return monitor_service_pb2.Event(
        step=monitor_service_pb2.StepEvent(
            task="digits",
            strategy=common_pb2.STRATEGY_CASCADE,
            step=common_pb2.EscalationStep(
                model=common_pb2.ModelRef(name=model, version=1),
                tier=tier,
                answer=common_pb2.Answer(label="3", confidence=confidence),
                decision=decision,
                latency_ms=2.0,
                cost=cost,
            ),
        )
    )


def workload() -> list[monitor_service_pb2.Event]:
    return [
        step_event("cheap", 1, common_pb2.DECISION_ESCALATE, 0.5, 1.0),
        step_event("heavy", 2, common_pb2.DECISION_ACCEPT, 0.9, 10.0),
        step_event("cheap", 1, common_pb2.DECISION_ACCEPT, 0.95, 1.0),
        monitor_service_pb2.Event(
            request=monitor_service_pb2.RequestEvent(strategy=common_pb2.STRATEGY_CASCADE, latency_ms=3, total_cost=11)
        ),
        monitor_service_pb2.Event(
            request=monitor_service_pb2.RequestEvent(strategy=common_pb2.STRATEGY_CASCADE, latency_ms=1, status_code=5)
        ),
        monitor_service_pb2.Event(cache=monitor_service_pb2.CacheEvent(level=common_pb2.CACHE_LEVEL_L4_FINAL_RESULT, hit=True)),
        monitor_service_pb2.Event(cache=monitor_service_pb2.CacheEvent(level=common_pb2.CACHE_LEVEL_L4_FINAL_RESULT, hit=False)),
        monitor_service_pb2.Event(),  # an event without a kind is not counted
    ]


def test_events_add_up_per_model_strategy_and_cache_level() -> None:
    aggregates = Aggregates()
    assert aggregates.record(workload(), dropped=4) == 7
    stats = aggregates.to_proto()
    assert (stats.events_recorded, stats.events_dropped, stats.requests) == (7, 4, 2)
    cheap, heavy = stats.models
    assert (cheap.model.name, cheap.steps, cheap.accepted, cheap.escalated) == ("cheap", 2, 1, 1)
    assert cheap.mean_confidence == 0.725
    assert (heavy.model.name, heavy.steps, heavy.accepted, heavy.total_cost) == ("heavy", 1, 1, 10.0)
    (cascade,) = stats.strategies
    assert (cascade.requests, cascade.errors, cascade.total_cost) == (2, 1, 11.0)
    (l4,) = stats.cache_levels
    assert (l4.hits, l4.misses) == (1, 1)


def test_prometheus_exposition_reports_the_same_numbers() -> None:
    aggregates = Aggregates()
    aggregates.record(workload())
    registry = CollectorRegistry()
    registry.register(AggregatesCollector(aggregates))
    page = generate_latest(registry).decode()
    assert 'inferscale_requests_total{strategy="STRATEGY_CASCADE"} 2.0' in page
    assert 'inferscale_request_errors_total{strategy="STRATEGY_CASCADE"} 1.0' in page
    assert 'inferscale_steps_total{decision="DECISION_ESCALATE",model="cheap",tier="1",version="1"} 1.0' in page
    assert 'inferscale_cache_lookups_total{level="CACHE_LEVEL_L4_FINAL_RESULT",result="hit"} 1.0' in page
    assert 'inferscale_step_latency_seconds_count{model="heavy",tier="2",version="1"} 1.0' in page


def test_feedback_scores_each_step_of_a_remembered_request_once() -> None:
    aggregates = Aggregates()
    escalated = step_event("cheap", 1, common_pb2.DECISION_ESCALATE, 0.5, 1.0)
    accepted = step_event("heavy", 2, common_pb2.DECISION_ACCEPT, 0.9, 10.0)
    accepted.step.step.answer.label = "7"
    request = monitor_service_pb2.Event(
        request=monitor_service_pb2.RequestEvent(
            task="digits", strategy=common_pb2.STRATEGY_CASCADE, answer=common_pb2.Answer(label="7")
        )
    )
    for event in (escalated, accepted, request):
        event.request_id = "r1"
    aggregates.record([escalated, accepted, request])
    scored, right = aggregates.feedback("r1", "7")
    assert right and scored.task == "digits"
    assert [(s.model, s.tier, s.right) for s in scored.steps] == [("cheap", 1, False), ("heavy", 2, True)]
    assert aggregates.learning_data("digits") == [scored.policy_steps()] and aggregates.learning_data("other") == []
    cheap, heavy = aggregates.to_proto().models
    assert list(heavy.scored_by_confidence_bin) == [0] * 9 + [1] and list(heavy.correct_by_confidence_bin) == [0] * 9 + [1]
    assert list(heavy.answers_by_confidence_bin) == [0] * 9 + [1]
    assert (cheap.scored, cheap.correct, cheap.accuracy) == (1, 0, 0.0)
    assert (heavy.scored, heavy.correct, heavy.accuracy) == (1, 1, 1.0)
    assert heavy.expected_calibration_error == pytest.approx(0.1)
    registry = CollectorRegistry()
    registry.register(AggregatesCollector(aggregates))
    samples = {
        (sample.name, sample.labels["model"]): sample.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
        if sample.name.startswith("inferscale_model_")
    }
    assert samples[("inferscale_model_accuracy", "heavy")] == 1.0
    assert samples[("inferscale_model_accuracy", "cheap")] == 0.0
    assert samples[("inferscale_model_expected_calibration_error", "heavy")] == pytest.approx(0.1)
    with pytest.raises(KeyError):
        aggregates.feedback("r1", "7")  # scored once only
    with pytest.raises(KeyError):
        aggregates.feedback("never-seen", "7")


def test_remembered_requests_are_bounded() -> None:
    from services.monitor import aggregates as module

    aggregates = Aggregates()
    events = []
    for n in range(module.MAX_REMEMBERED_REQUESTS + 1):
        event = monitor_service_pb2.Event(request_id=f"r{n}", request=monitor_service_pb2.RequestEvent())
        events.append(event)
    aggregates.record(events)
    with pytest.raises(KeyError):
        aggregates.feedback("r0", "1")
    scored, right = aggregates.feedback(f"r{module.MAX_REMEMBERED_REQUESTS}", "1")
    assert (scored.steps, right) == ((), False)


def test_one_request_id_keeps_a_bounded_number_of_steps_however_many_step_events_name_it() -> None:
    from services.monitor import aggregates as module

    aggregates = Aggregates()
    events = [step_event("digits_linear", 1, common_pb2.DECISION_ESCALATE, 0.5, 1.0) for _ in range(module.MAX_REMEMBERED_STEPS + 50)]
    for event in events:
        event.request_id = "flooded"
    aggregates.record(events)
    scored, _ = aggregates.feedback("flooded", "3")
    assert len(scored.steps) == module.MAX_REMEMBERED_STEPS


def test_latency_quantiles_are_read_from_the_histogram_as_prometheus_does() -> None:
    from services.monitor.aggregates import Histogram

    histogram = Histogram()
    assert histogram.quantile(0.5) == 0.0
    for seconds in [0.003] * 90 + [0.02] * 9 + [20.0]:
        histogram.observe(seconds)
    # 90 in (0.0025, 0.005]: the median is linear inside that bucket.
    assert histogram.quantile(0.5) == pytest.approx(0.0025 + 0.0025 * 50 / 90)
    assert 0.01 < histogram.quantile(0.95) <= 0.025
    assert histogram.quantile(0.999) == 10.0  # the overflow bucket reports the last finite bound
    assert histogram.quantiles_ms()["p50_latency_ms"] == pytest.approx(1000 * histogram.quantile(0.5))


def test_an_audit_of_a_semantic_hit_counts_as_an_audit_not_as_another_lookup() -> None:
    l1 = common_pb2.CACHE_LEVEL_L1_SEMANTIC
    aggregates = Aggregates()
    aggregates.record(
        [
            monitor_service_pb2.Event(cache=monitor_service_pb2.CacheEvent(level=l1, hit=False)),
            monitor_service_pb2.Event(cache=monitor_service_pb2.CacheEvent(level=l1, hit=True)),
            # The hit above, recomputed later and found wrong.
            monitor_service_pb2.Event(cache=monitor_service_pb2.CacheEvent(level=l1, hit=True, audited=True, false_hit=True)),
        ]
    )
    (stats,) = aggregates.to_proto().cache_levels
    assert (stats.hits, stats.misses, stats.audited, stats.false_hits) == (1, 1, 1, 1)


def cache_report(replica: str, **counters: int) -> monitor_service_pb2.Event:
    level = cache_service_pb2.LevelStats(level=common_pb2.CACHE_LEVEL_L3_MODEL_OUTPUT, **counters)
    return monitor_service_pb2.Event(cache_stats=monitor_service_pb2.CacheStatsEvent(replica=replica, levels=[level]))


def test_the_dropped_count_saturates_at_the_int64_bound_and_get_stats_still_answers() -> None:
    aggregates = Aggregates()
    for _ in range(2):
        aggregates.record([], dropped=2**63 - 1)
    assert aggregates.to_proto().events_dropped == 2**63 - 1


def test_cache_occupancy_summed_over_replicas_saturates_at_the_int64_bound() -> None:
    aggregates = Aggregates()
    aggregates.record([cache_report(f"cache-{n}", entries=2**62, bytes=2**62, max_bytes=2**62, evictions=2**62) for n in range(3)])
    (l3,) = aggregates.to_proto().cache_levels
    assert (l3.entries, l3.bytes, l3.evictions) == (2**63 - 1,) * 3
    assert aggregates.cache_occupancy(common_pb2.CACHE_LEVEL_L3_MODEL_OUTPUT).max_bytes == 2**63 - 1


def test_the_cache_replicas_remembered_are_bounded_forgetting_the_least_recently_reported() -> None:
    from services.monitor import aggregates as module

    aggregates = Aggregates()
    aggregates.record([cache_report(f"cache-{n}", entries=1) for n in range(module.MAX_CACHE_REPLICAS)])
    # cache-0 reports again, so cache-1 is now the least recently reported: the next new replica pushes it out.
    aggregates.record([cache_report("cache-0", entries=1), cache_report("new", entries=1)])
    assert len(aggregates.cache_replicas) == module.MAX_CACHE_REPLICAS
    assert "cache-0" in aggregates.cache_replicas and "new" in aggregates.cache_replicas
    assert "cache-1" not in aggregates.cache_replicas
    (l3,) = aggregates.to_proto().cache_levels
    assert l3.entries == module.MAX_CACHE_REPLICAS


def test_a_replicas_report_is_kept_as_a_copy_not_as_part_of_the_batch_it_came_in() -> None:
    # A sub-message kept by reference holds its whole batch (up to a 64 MiB message) in memory.
    aggregates = Aggregates()
    report = cache_report("cache-1", bytes=100)
    aggregates.record([report])
    report.cache_stats.levels[0].bytes = 7
    assert aggregates.cache_occupancy(common_pb2.CACHE_LEVEL_L3_MODEL_OUTPUT).bytes == 100
