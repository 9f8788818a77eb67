"""The record of every routing policy proposed: shadow evaluation on live scored traffic, then publication or rejection.

Pure logic, no gRPC, no storage: ``on_change`` is told of every policy that changed, so that the
caller can persist it.

A proposed policy starts in shadow. Each scored exploration request of its task that arrives
afterwards (every tier answered, so any thresholds can be replayed on it) is replayed with the
policy's thresholds; once ``min_shadow_requests`` have been, the policy is published if its shadow
accuracy reached the target, and rejected otherwise. Publishing retires the task's previous
policy. Versions count up across tasks and are never reused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from services.monitor.policy import LearnedPolicy, ScoredStep, replay

SHADOW = "shadow"
PUBLISHED = "published"
REJECTED = "rejected"
RETIRED = "retired"


@dataclass
class PolicyRecord:
    """One version of a task's cascade thresholds and how it fared."""

    version: int
    task: str
    state: str
    # Accept threshold per tier but the last.
    thresholds: dict[int, float]
    # Every tier the policy routes, the last one included.
    tiers: tuple[int, ...]
    target_accuracy: float
    learned_accuracy: float
    learned_cost: float
    learned_requests: int
    min_shadow_requests: int
    proposed_unix_ms: int
    shadow_requests: int = 0
    shadow_right: int = 0
    shadow_cost: float = 0.0
    reason: str = ""
    # Per tier, its member's weight in ensembles; empty in policies stored before weights were learned.
    weights: dict[int, float] = field(default_factory=dict)

    @property
    def shadow_accuracy(self) -> float:
        """The accuracy of the shadow replays so far; 0 before any."""
        return self.shadow_right / self.shadow_requests if self.shadow_requests else 0.0

    @property
    def label(self) -> str:
        """How responses and spans name the policy: "<task>/v<version>"."""
        return f"{self.task}/v{self.version}"


@dataclass
class PolicyBook:
    """Every policy, by version, and each task's published and shadow ones."""

    on_change: Callable[[PolicyRecord], None] = lambda record: None
    policies: dict[int, PolicyRecord] = field(default_factory=dict)

    @classmethod
    def restored(cls, records: Iterable[PolicyRecord], on_change: Callable[[PolicyRecord], None]) -> PolicyBook:
        """A book holding policies read back from storage."""
        return cls(on_change, {record.version: record for record in records})

    def _latest(self, task: str, state: str) -> PolicyRecord | None:
        found = [p for p in self.policies.values() if p.task == task and p.state == state]
        return max(found, key=lambda p: p.version) if found else None

    def published(self, task: str) -> PolicyRecord | None:
        """The task's published policy, if any."""
        return self._latest(task, PUBLISHED)

    def shadow(self, task: str) -> PolicyRecord | None:
        """The task's policy in shadow, if any."""
        return self._latest(task, SHADOW)

    def propose(self, task: str, learned: LearnedPolicy, tiers: Sequence[int], min_shadow_requests: int, now_ms: int) -> PolicyRecord:
        """Puts a learned policy in shadow, replacing (rejecting) one still there."""
        if min_shadow_requests < 1:
            raise ValueError(f"min_shadow_requests {min_shadow_requests} must be at least 1")
        record = PolicyRecord(
            version=max(self.policies, default=0) + 1,
            task=task,
            state=SHADOW,
            thresholds=dict(learned.thresholds),
            tiers=tuple(sorted(tiers)),
            target_accuracy=learned.target_accuracy,
            learned_accuracy=learned.replay.accuracy,
            learned_cost=learned.replay.mean_cost,
            learned_requests=learned.requests,
            min_shadow_requests=min_shadow_requests,
            proposed_unix_ms=now_ms,
            weights=dict(learned.weights),
        )
        previous = self.shadow(task)
        if previous is not None:
            previous.state = REJECTED
            previous.reason = f"replaced in shadow by v{record.version}"
            self.on_change(previous)
        self.policies[record.version] = record
        self.on_change(record)
        return record

    def observe(self, task: str, steps: Sequence[ScoredStep]) -> PolicyRecord | None:
        """Replays a newly scored request on the task's shadow policy; returns the policy if it changed."""
        record = self.shadow(task)
        if record is None or tuple(sorted({s.tier for s in steps})) != record.tiers:
            return None
        result = replay([steps], record.thresholds)
        record.shadow_requests += 1
        record.shadow_right += round(result.accuracy)
        record.shadow_cost += result.mean_cost
        if record.shadow_requests >= record.min_shadow_requests:
            if record.shadow_accuracy >= record.target_accuracy - 1e-12:
                current = self.published(task)
                if current is not None:
                    current.state = RETIRED
                    self.on_change(current)
                record.state = PUBLISHED
            else:
                record.state = REJECTED
                record.reason = (
                    f"shadow accuracy {record.shadow_accuracy:.4f} over {record.shadow_requests} requests "
                    f"missed the target {record.target_accuracy:.4f}"
                )
        self.on_change(record)
        return record
