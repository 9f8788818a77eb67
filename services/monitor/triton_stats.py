"""Triton's own per-model statistics, read periodically, so that compute time is attributed as Triton measured it.

``summarise`` is pure (Triton's statistics messages in, InferScale's out); ``poll_triton`` is the
background loop that reads every replica and keeps the sum in the aggregates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

import tritonclient.grpc.aio as triton_aio
from tritonclient.utils import InferenceServerException

from inferscale.v1 import common_pb2, monitor_service_pb2
from services.monitor.aggregates import Aggregates

LOG = logging.getLogger(__name__)


def summarise(replica_statistics: Iterable[object]) -> dict[tuple[str, int], monitor_service_pb2.TritonModelStats]:
    """Adds up each model version's statistics over the replicas' ModelStatisticsResponse messages."""
    totals: dict[tuple[str, int], dict[str, int]] = {}
    for response in replica_statistics:
        for model in response.model_stats:  # type: ignore[attr-defined]
            if not model.version:
                continue
            key = (model.name, int(model.version))
            t = totals.setdefault(key, dict.fromkeys(("inferences", "executions", "failures", "success", "queue_ns", "compute_ns"), 0))
            stats = model.inference_stats
            t["inferences"] += model.inference_count
            t["executions"] += model.execution_count
            t["failures"] += stats.fail.count
            t["success"] += stats.success.count
            t["queue_ns"] += stats.queue.ns
            t["compute_ns"] += stats.compute_input.ns + stats.compute_infer.ns + stats.compute_output.ns
    return {
        key: monitor_service_pb2.TritonModelStats(
            model=common_pb2.ModelRef(name=key[0], version=key[1]),
            inference_count=t["inferences"],
            execution_count=t["executions"],
            failure_count=t["failures"],
            mean_queue_us=t["queue_ns"] / t["success"] / 1000 if t["success"] else 0.0,
            mean_compute_us=t["compute_ns"] / t["success"] / 1000 if t["success"] else 0.0,
            compute_seconds=t["compute_ns"] / 1e9,
        )
        for key, t in totals.items()
    }


async def poll_triton(urls: Sequence[str], aggregates: Aggregates, interval_seconds: float, timeout_seconds: float = 5.0) -> None:
    """Reads every replica's statistics every ``interval_seconds`` until cancelled; a replica that fails is left out that round."""
    clients = [triton_aio.InferenceServerClient(url) for url in urls]
    try:
        while True:
            responses = []
            for url, client in zip(urls, clients, strict=True):
                try:
                    responses.append(await client.get_inference_statistics(client_timeout=timeout_seconds))
                except InferenceServerException as error:
                    LOG.warning("Triton %s statistics not read: %s", url, error.message())
            if responses:
                aggregates.triton_models = summarise(responses)
            await asyncio.sleep(interval_seconds)
    finally:
        for client in clients:
            await client.close()
