"""Several Triton replicas behind one interface: balanced, health-checked, and failed over.

Inference is retried on another replica when one is unreachable, and after a short exponential
backoff when every one is; it is safe to retry because a model call has no side effect. An
endpoint that fails leaves the rotation at once (the breaker opens) and returns when a health
probe succeeds (it closes). The replicas are expected to serve the same model repository, so
the registry may be read from any healthy one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from tritonclient.grpc import model_config_pb2

from inferscale.errors import InferScaleError, ModelFailed, Unavailable
from inferscale.triton.client import InferResult, ModelRestarting, RepositoryEntry, TritonClient
from inferscale.v1 import common_pb2
from services.orchestrator.balancing import Endpoint, choose

LOG = logging.getLogger(__name__)
Result = TypeVar("Result")
# Pauses before another round over every endpoint when all of them failed (exponential backoff,
# 0.75 s in all): a call to Triton has no side effect, so repeating it is safe.
RETRY_PAUSES_SECONDS = (0.05, 0.1, 0.2, 0.4)
# A dead model is reloaded at most this often; calls in between wait for the reload under way.
REVIVE_INTERVAL_SECONDS = 5.0


class TritonPool:
    """Balances calls over Triton endpoints by least outstanding requests and fails over on UNAVAILABLE."""

    def __init__(self, urls: Sequence[str], *, health_interval_seconds: float = 1.0, repository_key: str = "") -> None:
        if not urls:
            raise ValueError("at least one Triton URL is needed")
        self.endpoints = [Endpoint(url) for url in urls]
        self._clients = {url: TritonClient(url, repository_key=repository_key) for url in urls}
        self._health_interval = health_interval_seconds
        self._task: asyncio.Task[None] | None = None
        self._reviving: dict[str, asyncio.Lock] = {}
        self._revived_at: dict[str, float] = {}

    def start(self) -> None:
        """Starts the background health checks."""
        self._task = asyncio.create_task(self._check_health_forever(), name="triton-health")

    async def close(self) -> None:
        """Stops the health checks and closes every channel."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for client in self._clients.values():
            await client.close()

    async def check_health(self) -> None:
        """Asks every endpoint whether it is live, and moves it in or out of the rotation."""
        results = await asyncio.gather(*(self._clients[e.url].server_live() for e in self.endpoints))
        for endpoint, ready in zip(self.endpoints, results, strict=True):
            if ready and not endpoint.healthy:
                LOG.info("Triton %s is healthy again; back in the rotation", endpoint.url)
                endpoint.mark_healthy()
            elif not ready and endpoint.healthy:
                LOG.warning("Triton %s failed its health check; out of the rotation", endpoint.url)
                endpoint.mark_failed("health check failed")

    async def _check_health_forever(self) -> None:
        while True:
            await asyncio.sleep(self._health_interval)
            await self.check_health()

    async def _call(self, what: str, call: Callable[[TritonClient, float], Awaitable[Result]], timeout_seconds: float) -> Result:
        """Runs ``call`` on the best endpoint, and on UNAVAILABLE on the next one, until one answers."""
        deadline = time.monotonic() + timeout_seconds
        tried: set[str] = set()
        errors: list[str] = []
        pauses = iter(RETRY_PAUSES_SECONDS)
        while True:
            endpoint = choose(self.endpoints, frozenset(tried))
            remaining = deadline - time.monotonic()
            if endpoint is None and remaining > 0:
                # Every endpoint failed this round: a restarting server or a dropped connection
                # often answers a moment later, and the call is safe to repeat.
                pause = next(pauses, None)
                if pause is not None and pause < remaining:
                    await asyncio.sleep(pause)
                    tried.clear()
                    continue
            if endpoint is None or remaining <= 0:
                detail = "; ".join(errors) or "no endpoint is left to try"
                raise Unavailable(f"no Triton endpoint could serve {what}: {detail}")
            tried.add(endpoint.url)
            endpoint.outstanding += 1
            endpoint.served += 1
            try:
                return await call(self._clients[endpoint.url], remaining)
            except Unavailable as error:
                endpoint.mark_failed(str(error))
                errors.append(f"{endpoint.url}: {error}")
                LOG.warning("Triton %s failed %s; trying another endpoint: %s", endpoint.url, what, error)
            finally:
                endpoint.outstanding -= 1

    async def infer(
        self, model_name: str, model_version: int, inputs: Sequence[common_pb2.InferTensor], *, timeout_seconds: float
    ) -> InferResult:
        """Runs one inference on the least busy healthy replica, failing over to the others.

        A model whose backend process died (Triton 2.51 keeps calling it ready, and fails every
        call) is reloaded, and the call runs once more: a model call has no side effect.
        """
        deadline = time.monotonic() + timeout_seconds

        async def attempt() -> InferResult:
            return await self._call(
                f"inference on {model_name}",
                lambda client, remaining: client.infer(model_name, model_version, inputs, timeout_seconds=remaining),
                max(deadline - time.monotonic(), 0.0),
            )

        try:
            return await attempt()
        except ModelRestarting as error:
            await self._revive(model_name, str(error))
            return await attempt()

    async def stream_infer(
        self, model_name: str, model_version: int, inputs: Sequence[common_pb2.InferTensor], *, timeout_seconds: float
    ) -> AsyncIterator[InferResult]:
        """Streams one request to a decoupled model on the least busy healthy replica; yields each response.

        A replica that fails before its first response is failed over, as :meth:`infer` does; once
        a response has been passed on, a failure ends the stream, since running the request again
        elsewhere would repeat what the caller has already seen. Closing the iteration cancels the
        request on Triton.
        """
        deadline = time.monotonic() + timeout_seconds
        tried: set[str] = set()
        errors: list[str] = []
        revived = False
        while True:
            endpoint = choose(self.endpoints, frozenset(tried))
            remaining = deadline - time.monotonic()
            if endpoint is None or remaining <= 0:
                detail = "; ".join(errors) or "no endpoint is left to try"
                raise Unavailable(f"no Triton endpoint could serve streamed inference on {model_name}: {detail}")
            tried.add(endpoint.url)
            endpoint.outstanding += 1
            endpoint.served += 1
            answered = False
            try:
                stream = self._clients[endpoint.url].stream_infer(model_name, model_version, inputs, timeout_seconds=remaining)
                async with contextlib.aclosing(stream):
                    async for result in stream:
                        answered = True
                        yield result
                return
            except ModelRestarting as error:
                if answered or revived:
                    raise
                revived = True
                tried.discard(endpoint.url)
                await self._revive(model_name, str(error))
            except Unavailable as error:
                if answered:
                    raise
                endpoint.mark_failed(str(error))
                errors.append(f"{endpoint.url}: {error}")
                LOG.warning("Triton %s failed streamed inference on %s; trying another endpoint: %s", endpoint.url, model_name, error)
            finally:
                endpoint.outstanding -= 1

    async def _revive(self, model_name: str, why: str) -> None:
        """Reloads a dead model on every replica, once for all the calls that found it dead."""
        lock = self._reviving.setdefault(model_name, asyncio.Lock())
        async with lock:
            if time.monotonic() - self._revived_at.get(model_name, float("-inf")) < REVIVE_INTERVAL_SECONDS:
                return  # another call has just reloaded it
            LOG.warning("%s; reloading the model", why)
            try:
                await self.load_model(model_name)
            except InferScaleError as error:
                raise ModelFailed(f"{why}; reloading it failed ({error}): Triton reloads models only in explicit model-control mode") from None
            self._revived_at[model_name] = time.monotonic()

    async def repository_index(self) -> list[RepositoryEntry]:
        """Returns the repository index of a healthy replica."""
        return await self._call("the repository index", lambda client, remaining: client.repository_index(timeout_seconds=remaining), 10.0)

    async def model_config(self, name: str) -> model_config_pb2.ModelConfig:
        """Returns a model's config from a healthy replica."""
        return await self._call(f"the config of {name}", lambda client, remaining: client.model_config(name, timeout_seconds=remaining), 10.0)

    async def load_model(self, name: str) -> None:
        """Loads a model on every replica; one that fails makes the whole load fail."""
        await asyncio.gather(*(self._clients[e.url].load_model(name) for e in self.endpoints))

    async def unload_model(self, name: str) -> None:
        """Unloads a model on every replica."""
        await asyncio.gather(*(self._clients[e.url].unload_model(name) for e in self.endpoints))
