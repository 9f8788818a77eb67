"""Adds up the services' events into counts per strategy, model version and cache level.

Pure logic, no gRPC: it reads event messages and keeps plain counters that both the GetStats
RPC and the Prometheus collector read, so the two never disagree.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from inferscale.v1 import cache_service_pb2, common_pb2, monitor_service_pb2
from services.monitor.calibration import expected_calibration_error, fit_temperature, reliability_bins
from services.monitor.policy import ScoredStep

# Requests whose steps are kept for feedback to score; the oldest go first.
MAX_REMEMBERED_REQUESTS = 100_000
# Steps kept per remembered request: more than any plan runs (its steps, or a search's calls).
# Step events past it for one request id are counted but not kept, so one id cannot grow without bound.
MAX_REMEMBERED_STEPS = 128
# Scored answers kept per model for its calibration: the recent ones describe the model now.
MAX_SCORED_PER_MODEL = 10_000
# Scored requests kept for learning the routing policy.
MAX_SCORED_REQUESTS = 20_000
# Cache replicas whose latest report is kept; past it the replica that reported least recently
# is forgotten (its occupancy leaves the sums, as a replica that stopped would).
MAX_CACHE_REPLICAS = 1_024
# The range of GetStats's int64 fields: a sum past it is reported at the bound, never refused.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# Equal confidence bins of the reliability diagram.
CONFIDENCE_BINS = 10
# Latency histogram bounds in seconds, from a cache hit to a deep cascade.
LATENCY_BUCKETS_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Histogram:
    """Counts of observations per bucket (non-cumulative) and their sum."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_SECONDS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        """Adds one observation."""
        self.counts[bisect.bisect_left(LATENCY_BUCKETS_SECONDS, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        """How many observations there were."""
        return sum(self.counts)

    def quantile(self, q: float) -> float:
        """The ``q`` quantile in seconds, linear within its bucket as Prometheus's histogram_quantile;
        0 without observations, the last finite bound for the overflow bucket."""
        total = self.count
        if total == 0:
            return 0.0
        rank = q * total
        seen = 0
        for index, count in enumerate(self.counts):
            if count and seen + count >= rank:
                if index == len(LATENCY_BUCKETS_SECONDS):
                    return LATENCY_BUCKETS_SECONDS[-1]
                low = LATENCY_BUCKETS_SECONDS[index - 1] if index else 0.0
                high = LATENCY_BUCKETS_SECONDS[index]
                return low + (high - low) * (rank - seen) / count
            seen += count
        return LATENCY_BUCKETS_SECONDS[-1]

    def quantiles_ms(self) -> dict[str, float]:
        """p50, p95 and p99 in milliseconds, as the GetStats fields name them."""
        return {f"p{q}_latency_ms": 1000 * self.quantile(q / 100) for q in (50, 95, 99)}


@dataclass
class ModelCounters:
    """The steps one model version ran."""

    tier: int = 0
    steps: int = 0
    accepted: int = 0
    escalated: int = 0
    confidence_sum: float = 0.0
    # Every answer's confidence, in CONFIDENCE_BINS equal bins (the last one closed).
    confidence_bins: list[int] = field(default_factory=lambda: [0] * CONFIDENCE_BINS)
    cost: float = 0.0
    latency: Histogram = field(default_factory=Histogram)
    scored: int = 0
    correct: int = 0
    # (confidence, right) of the most recent scored answers.
    calibration: deque[tuple[float, bool]] = field(default_factory=lambda: deque(maxlen=MAX_SCORED_PER_MODEL))

    def score(self, confidence: float, right: bool) -> None:
        """Counts one answer that feedback judged."""
        self.scored += 1
        self.correct += int(right)
        self.calibration.append((confidence, right))

    @property
    def accuracy(self) -> float:
        """The share of scored answers that were right; 0 before any feedback."""
        return self.correct / self.scored if self.scored else 0.0

    def calibration_error(self) -> float:
        """The expected calibration error of the recent scored answers."""
        return expected_calibration_error(*_unzip(self.calibration))

    def temperature(self) -> float:
        """The temperature that best calibrates the recent scored answers (a 1-D fit: only on request)."""
        return fit_temperature(*_unzip(self.calibration))

    def reliability(self) -> dict[str, list[int]]:
        """Scored and right answers in each of ten equal confidence bins, over the recent scored answers,
        named as the GetStats fields are."""
        scored, right = [0] * CONFIDENCE_BINS, [0] * CONFIDENCE_BINS
        for b in reliability_bins(*_unzip(self.calibration), bins=CONFIDENCE_BINS):
            index = round(b.low * CONFIDENCE_BINS)
            scored[index] = b.count
            right[index] = round(b.accuracy * b.count)
        return {"scored_by_confidence_bin": scored, "correct_by_confidence_bin": right}


@dataclass
class RememberedRequest:
    """What a request answered, kept until feedback arrives or it is pushed out."""

    task: str = ""
    answer: str = ""
    # (model name, version, tier, label, confidence, cost) of each step that answered.
    steps: list[tuple[str, int, int, str, float, float]] = field(default_factory=list)


@dataclass(frozen=True)
class ScoredModelStep:
    """One model's answer to a request, judged by feedback."""

    model: str
    version: int
    tier: int
    confidence: float
    right: bool
    cost: float


@dataclass(frozen=True)
class ScoredRequest:
    """A request's steps as feedback judged them: what the policy learner and the calibration learn from."""

    task: str
    steps: tuple[ScoredModelStep, ...]

    def policy_steps(self) -> list[ScoredStep]:
        """The steps as the policy learner reads them."""
        return [ScoredStep(tier=s.tier, confidence=s.confidence, right=s.right, cost=s.cost) for s in self.steps]


@dataclass
class StrategyCounters:
    """The requests one strategy finished."""

    requests: int = 0
    errors: int = 0
    cost: float = 0.0
    latency: Histogram = field(default_factory=Histogram)


@dataclass
class CacheCounters:
    """The lookups at one cache level as the router and orchestrator saw them, and the audits of its hits."""

    hits: int = 0
    misses: int = 0
    audited: int = 0
    false_hits: int = 0


@dataclass
class Aggregates:
    """Everything the monitor has added up since it started."""

    events_recorded: int = 0
    events_dropped: int = 0
    requests: int = 0
    strategies: dict[int, StrategyCounters] = field(default_factory=dict)
    models: dict[tuple[str, int], ModelCounters] = field(default_factory=dict)
    cache_levels: dict[int, CacheCounters] = field(default_factory=dict)
    # Each cache replica's latest report of its levels, least recently reported first:
    # replica -> level -> statistics.
    cache_replicas: OrderedDict[str, dict[int, cache_service_pb2.LevelStats]] = field(default_factory=OrderedDict)
    _remembered: OrderedDict[str, RememberedRequest] = field(default_factory=OrderedDict)
    # The scored requests, for the policy learner.
    scored_requests: deque[ScoredRequest] = field(default_factory=lambda: deque(maxlen=MAX_SCORED_REQUESTS))
    # Triton's own statistics per model version, as last read.
    triton_models: dict[tuple[str, int], monitor_service_pb2.TritonModelStats] = field(default_factory=dict)

    def _remember(self, request_id: str) -> RememberedRequest | None:
        if not request_id:
            return None
        remembered = self._remembered.get(request_id)
        if remembered is None:
            remembered = self._remembered[request_id] = RememberedRequest()
            if len(self._remembered) > MAX_REMEMBERED_REQUESTS:
                self._remembered.popitem(last=False)
        return remembered

    def feedback(self, request_id: str, label: str) -> tuple[ScoredRequest, bool]:
        """Scores a remembered request's steps against the correct label.

        Returns the scored request and whether its final answer was right; raises KeyError for
        a request it does not remember. Feedback for a request counts once: the request is
        forgotten after it is scored.
        """
        remembered = self._remembered.pop(request_id)
        scored = ScoredRequest(
            remembered.task,
            tuple(
                ScoredModelStep(name, version, tier, confidence, step_label == label, cost)
                for name, version, tier, step_label, confidence, cost in remembered.steps
            ),
        )
        self.add_scored(scored)
        return scored, remembered.answer == label

    def add_scored(self, scored: ScoredRequest) -> None:
        """Counts a scored request: each model's accuracy and calibration, and the learner's data."""
        for step in scored.steps:
            self.models.setdefault((step.model, step.version), ModelCounters(tier=step.tier)).score(step.confidence, step.right)
        if scored.steps:
            self.scored_requests.append(scored)

    def learning_data(self, task: str = "") -> list[list[ScoredStep]]:
        """The scored requests of ``task`` (every task's when empty) as the policy learner reads them."""
        return [r.policy_steps() for r in self.scored_requests if not task or r.task == task]

    def record(self, events: Iterable[monitor_service_pb2.Event], dropped: int = 0) -> int:
        """Adds a batch of events and the sender's count of dropped ones; returns how many it recorded."""
        self.events_dropped = _saturated(self.events_dropped + max(dropped, 0))
        recorded = 0
        for event in events:
            kind = event.WhichOneof("kind")
            if kind == "request":
                self._record_request(event.request)
                remembered = self._remember(event.request_id)
                if remembered is not None:
                    remembered.answer = event.request.answer.label
                    remembered.task = event.request.task
            elif kind == "step":
                self._record_step(event.step.step)
                remembered = self._remember(event.request_id)
                step = event.step.step
                if remembered is not None and step.answer.label and len(remembered.steps) < MAX_REMEMBERED_STEPS:
                    remembered.steps.append(
                        (step.model.name, step.model.version, step.tier, step.answer.label, step.answer.confidence, step.cost)
                    )
            elif kind == "cache":
                self._record_cache(event.cache)
            elif kind == "cache_stats":
                self._record_cache_stats(event.cache_stats)
            else:
                continue
            recorded += 1
        self.events_recorded += recorded
        return recorded

    def _record_request(self, request: monitor_service_pb2.RequestEvent) -> None:
        self.requests += 1
        counters = self.strategies.setdefault(request.strategy, StrategyCounters())
        counters.requests += 1
        counters.errors += int(request.status_code != 0)
        counters.cost += request.total_cost
        counters.latency.observe(request.latency_ms / 1000)

    def _record_step(self, step: common_pb2.EscalationStep) -> None:
        counters = self.models.setdefault((step.model.name, step.model.version), ModelCounters())
        counters.tier = step.tier
        counters.steps += 1
        counters.accepted += int(step.decision == common_pb2.DECISION_ACCEPT)
        counters.escalated += int(step.decision == common_pb2.DECISION_ESCALATE)
        counters.confidence_sum += step.answer.confidence
        if step.answer.label:
            counters.confidence_bins[min(int(step.answer.confidence * CONFIDENCE_BINS), CONFIDENCE_BINS - 1)] += 1
        counters.cost += step.cost
        counters.latency.observe(step.latency_ms / 1000)

    def _record_cache(self, cache: monitor_service_pb2.CacheEvent) -> None:
        counters = self.cache_levels.setdefault(cache.level, CacheCounters())
        if cache.audited:
            # An audit reruns the plan for a hit that its lookup already counted: it is no lookup.
            counters.audited += 1
            counters.false_hits += int(cache.false_hit)
        else:
            counters.hits += int(cache.hit)
            counters.misses += int(not cache.hit)

    def _record_cache_stats(self, report: monitor_service_pb2.CacheStatsEvent) -> None:
        levels = {}
        for s in report.levels:
            # A copy: a sub-message of the batch would keep the whole batch in memory.
            kept = levels[s.level] = cache_service_pb2.LevelStats()
            kept.CopyFrom(s)
        self.cache_replicas[report.replica] = levels
        self.cache_replicas.move_to_end(report.replica)
        if len(self.cache_replicas) > MAX_CACHE_REPLICAS:
            self.cache_replicas.popitem(last=False)

    def cache_occupancy(self, level: int) -> cache_service_pb2.LevelStats:
        """One level's entries, bytes, evictions and compute saved, summed over the replicas' latest reports
        (each sum saturated at the int64 bound)."""
        reports = [levels[level] for levels in self.cache_replicas.values() if level in levels]
        return cache_service_pb2.LevelStats(
            level=level,
            entries=_saturated(sum(s.entries for s in reports)),
            bytes=_saturated(sum(s.bytes for s in reports)),
            max_bytes=_saturated(sum(s.max_bytes for s in reports)),
            evictions=_saturated(sum(s.evictions for s in reports)),
            compute_saved=sum(s.compute_saved for s in reports),
        )

    def cache_stats(self) -> list[monitor_service_pb2.CacheLevelStats]:
        """Every level that was looked up or reported, in level order."""
        levels = set(self.cache_levels) | {lv for r in self.cache_replicas.values() for lv in r}
        stats = []
        for level in sorted(levels):
            c = self.cache_levels.get(level, CacheCounters())
            occupancy = self.cache_occupancy(level)
            stats.append(
                monitor_service_pb2.CacheLevelStats(
                    level=level,
                    hits=c.hits,
                    misses=c.misses,
                    entries=occupancy.entries,
                    bytes=occupancy.bytes,
                    evictions=occupancy.evictions,
                    compute_saved=occupancy.compute_saved,
                    audited=c.audited,
                    false_hits=c.false_hits,
                )
            )
        return stats

    def to_proto(self) -> monitor_service_pb2.GetStatsResponse:
        """Returns the counts as the GetStats answer, in the documented order."""
        return monitor_service_pb2.GetStatsResponse(
            events_recorded=self.events_recorded,
            events_dropped=self.events_dropped,
            requests=self.requests,
            strategies=[
                monitor_service_pb2.StrategyStats(
                    strategy=strategy, requests=c.requests, errors=c.errors, total_cost=c.cost, **c.latency.quantiles_ms()
                )
                for strategy, c in sorted(self.strategies.items())
            ],
            models=[
                monitor_service_pb2.ModelStats(
                    model=common_pb2.ModelRef(name=name, version=version),
                    tier=c.tier,
                    steps=c.steps,
                    accepted=c.accepted,
                    escalated=c.escalated,
                    mean_latency_ms=1000 * c.latency.total / c.steps if c.steps else 0.0,
                    mean_confidence=c.confidence_sum / c.steps if c.steps else 0.0,
                    answers_by_confidence_bin=c.confidence_bins,
                    total_cost=c.cost,
                    scored=c.scored,
                    correct=c.correct,
                    accuracy=c.accuracy,
                    expected_calibration_error=c.calibration_error(),
                    calibration_temperature=c.temperature(),
                    **c.reliability(),
                    **c.latency.quantiles_ms(),
                )
                for (name, version), c in sorted(self.models.items(), key=lambda kv: (kv[1].tier, kv[0]))
            ],
            cache_levels=self.cache_stats(),
            triton_models=[self.triton_models[key] for key in sorted(self.triton_models)],
        )


def _saturated(count: int) -> int:
    """``count`` within the range of an int64 proto field."""
    return min(max(count, INT64_MIN), INT64_MAX)


def _unzip(pairs: Iterable[tuple[float, bool]]) -> tuple[list[float], list[bool]]:
    confidences: list[float] = []
    rights: list[bool] = []
    for confidence, right in pairs:
        confidences.append(confidence)
        rights.append(right)
    return confidences, rights
