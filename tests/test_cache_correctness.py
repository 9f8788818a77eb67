"""The cache serves only what the whole plan would answer with the current models, and each lookup counts once.

The suite here is its own: Triton under explicit model control, so that a test takes a model out
of routing, brings it back or loads a new version of it through the orchestrator's admin calls,
which return once the registry has followed (it reads Triton on no schedule of its own here). The
router reads its model list once and keeps it, so its plans still name a model that the
orchestrator no longer routes to, as they do for a moment in production.
"""

from __future__ import annotations

import pathlib
import shutil
import time
from collections.abc import Iterator

import numpy as np
import pytest

from inferscale.steps import ANSWERED
from inferscale.suite import Suite
from inferscale.v1 import (
    cache_service_pb2,
    cache_service_pb2_grpc,
    common_pb2,
    monitor_service_pb2,
    monitor_service_pb2_grpc,
    orchestrator_service_pb2,
    orchestrator_service_pb2_grpc,
    router_service_pb2,
    router_service_pb2_grpc,
)
from services.router.planning import result_key
from tests.conftest import private_repository, private_suite
from tests.test_cache_levels_end_to_end import unit
from tests.test_live_registry import eventually, l4_stats, request

pytestmark = pytest.mark.integration
L1 = common_pb2.CACHE_LEVEL_L1_SEMANTIC
L4 = common_pb2.CACHE_LEVEL_L4_FINAL_RESULT
FROZEN = {
    # The router plans from the model list it read first; the registry follows the admin calls only.
    "INFERSCALE_CATALOG_TTL_SECONDS": "3600",
    "INFERSCALE_REGISTRY_REFRESH_SECONDS": "3600",
    "INFERSCALE_SEMANTIC_AUDIT_RATE": "1",
    "INFERSCALE_SHUTDOWN_GRACE_SECONDS": "1",
}


class CountingRouter:
    """The suite's router, counting the requests sent to it, so that a test can wait until the
    monitor has recorded every event the router sent for them."""

    def __init__(self, suite: Suite) -> None:
        self._suite = suite
        self.sent = 0

    def infer(self, asked: router_service_pb2.InferRequest) -> router_service_pb2.InferResponse:
        """Sends one request."""
        self.sent += 1
        with self._suite.channel("router") as channel:
            return router_service_pb2_grpc.RouterServiceStub(channel).Infer(asked, timeout=30)

    def settled_levels(self, audits: int = 0) -> dict[int, monitor_service_pb2.CacheLevelStats]:
        """The monitor's cache counts once it has recorded every request sent (the router sends its
        events in order, a request's own last, so each lookup before it is in) and ``audits`` audits."""
        with self._suite.channel("monitor") as channel:
            monitor = monitor_service_pb2_grpc.MonitorServiceStub(channel)

            def recorded() -> dict[int, monitor_service_pb2.CacheLevelStats] | None:
                stats = monitor.GetStats(monitor_service_pb2.GetStatsRequest(), timeout=5)
                levels = {level.level: level for level in stats.cache_levels}
                audited = sum(level.audited for level in levels.values())
                return levels if stats.requests >= self.sent and audited >= audits else None

            return eventually(recorded, what=f"the monitor recording {self.sent} requests and {audits} audits")


@pytest.fixture(scope="module")
def frozen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Suite, pathlib.Path]]:
    repository = private_repository(tmp_path_factory, "cache-correctness")
    with private_suite(tmp_path_factory, "cache-correctness", repository, FROZEN, model_control_mode="explicit") as suite:
        yield suite, repository


@pytest.fixture(scope="module")
def frozen_router(frozen: tuple[Suite, pathlib.Path]) -> CountingRouter:
    counting = CountingRouter(frozen[0])
    # The router reads its model list now, with every model routable, and keeps it.
    counting.infer(request(0, skip_cache=True))
    return counting


def load(suite: Suite, model_name: str) -> orchestrator_service_pb2.LoadModelResponse:
    with suite.channel("orchestrator") as channel:
        return orchestrator_service_pb2_grpc.OrchestratorServiceStub(channel).LoadModel(
            orchestrator_service_pb2.LoadModelRequest(model_name=model_name), timeout=120, metadata=suite.metadata("admin")
        )


def unload(suite: Suite, model_name: str) -> None:
    with suite.channel("orchestrator") as channel:
        orchestrator_service_pb2_grpc.OrchestratorServiceStub(channel).UnloadModel(
            orchestrator_service_pb2.UnloadModelRequest(model_name=model_name), timeout=60, metadata=suite.metadata("admin")
        )


def test_an_answer_made_while_the_top_tier_was_out_of_routing_is_not_served_once_it_is_back(
    frozen, frozen_router: CountingRouter
) -> None:
    suite, _ = frozen
    # Image 21: digits_linear and digits_mlp both fall short of a threshold of 1, so the plan
    # needs its top tier.
    asked = request(21, confidence_threshold=1.0)
    unload(suite, "digits_ensemble")
    try:
        short = frozen_router.infer(asked)
    finally:
        load(suite, "digits_ensemble")
    assert "digits_ensemble" in [step.model.name for step in short.plan.steps]
    assert ("digits_mlp", common_pb2.DECISION_ACCEPT) in [(s.model.name, s.decision) for s in short.steps]
    again = frozen_router.infer(asked)
    assert again.cache_level == common_pb2.CACHE_LEVEL_UNSPECIFIED
    assert ("digits_ensemble", common_pb2.DECISION_ACCEPT) in [(s.model.name, s.decision) for s in again.steps]
    # The short run said why: the step its answer lacked, after the step that answered.
    assert (short.steps[-1].model.name, short.steps[-1].decision) == ("digits_ensemble", common_pb2.DECISION_SKIPPED)
    assert "left routing" in short.steps[-1].reason
    # The whole plan's answer is kept.
    assert frozen_router.infer(asked).cache_level == L4


def test_a_new_complexity_model_version_retires_the_answers_the_old_one_analysed(
    frozen, frozen_router: CountingRouter
) -> None:
    suite, repository = frozen
    asked = request(22, analyze_complexity=True)
    first = frozen_router.infer(asked)
    assert ("digits_complexity", 1) in [(s.model.name, s.model.version) for s in first.steps]
    assert frozen_router.infer(asked).cache_level == L4
    removals_before = l4_stats(suite).removals
    shutil.copytree(repository / "digits_complexity" / "1", repository / "digits_complexity" / "2",
                    ignore=shutil.ignore_patterns("__pycache__"))
    assert load(suite, "digits_complexity").model.model.version == 2
    # The orchestrator told the cache to drop what version 1 analysed.
    assert l4_stats(suite).removals > removals_before
    again = frozen_router.infer(asked)
    assert again.cache_level == common_pb2.CACHE_LEVEL_UNSPECIFIED
    assert ("digits_complexity", 2) in [(s.model.name, s.model.version) for s in again.steps]


def test_a_semantic_hit_and_its_audit_count_as_one_hit_and_one_audit(frozen_router: CountingRouter) -> None:
    before = frozen_router.settled_levels()
    rng = np.random.default_rng(23)
    neighbourhood = rng.standard_normal(32)
    frozen_router.infer(request(23, embedding=unit(neighbourhood)))
    near = unit(neighbourhood + 0.05 * rng.standard_normal(32))
    served = frozen_router.infer(request(24, embedding=near))
    assert served.cache_level == L1
    # Every semantic hit is audited here: the audit's own report comes after the request's.
    audits_before = sum(level.audited for level in before.values())
    after = frozen_router.settled_levels(audits=audits_before + 1)
    counted = after[L1]
    was = before.get(L1, monitor_service_pb2.CacheLevelStats())
    assert (counted.hits - was.hits, counted.misses - was.misses, counted.audited - was.audited) == (1, 1, 1)


def test_a_final_result_entry_that_does_not_parse_counts_as_a_miss(frozen, frozen_router: CountingRouter) -> None:
    suite, _ = frozen
    asked = request(25)
    computed = frozen_router.infer(asked)
    corrupt = cache_service_pb2.CacheEntry(
        value=b"\xff\xff\xff",
        produced_by=[step.model for step in computed.steps if step.decision in ANSWERED],
        compute_cost=computed.total_cost,
    )
    key = result_key(computed.plan, asked.inputs)
    with suite.channel("cache") as channel:
        cache = cache_service_pb2_grpc.CacheServiceStub(channel)
        # The router stores its answer in the background: wait for that store to land, or it
        # would overwrite the corrupt entry after it.
        deadline = time.monotonic() + 30
        while not cache.Lookup(cache_service_pb2.LookupRequest(level=L4, key=key), timeout=5).hit:
            assert time.monotonic() < deadline, "the router never stored its answer"
            time.sleep(0.02)
        cache.Store(cache_service_pb2.StoreRequest(level=L4, key=key, entry=corrupt), timeout=5)
    was = frozen_router.settled_levels()[L4]
    again = frozen_router.infer(asked)
    assert again.cache_level == common_pb2.CACHE_LEVEL_UNSPECIFIED and again.answer == computed.answer
    counted = frozen_router.settled_levels()[L4]
    assert (counted.hits - was.hits, counted.misses - was.misses) == (0, 1)
