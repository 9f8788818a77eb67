"""Keeps the registry in step with Triton: reads the repository index and each model's config, live."""

from __future__ import annotations

import asyncio
import logging

from inferscale.errors import InferScaleError
from inferscale.triton.client import TritonClient
from services.orchestrator.registry import RegisteredModel, RegistrySnapshot, parse_model

LOG = logging.getLogger(__name__)


class TritonRegistry:
    """The current RegistrySnapshot, refreshed from Triton every ``refresh_seconds``."""

    def __init__(self, triton: TritonClient, refresh_seconds: float) -> None:
        self._triton = triton
        self._refresh_seconds = refresh_seconds
        self.snapshot = RegistrySnapshot()
        # A config is read again only when its model's version changes.
        self._parsed: dict[tuple[str, int], RegisteredModel] = {}
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> RegistrySnapshot:
        """Reads Triton now and replaces the snapshot; logs each model left out of routing once."""
        entries = await self._triton.repository_index()
        latest: dict[str, tuple[int, bool]] = {}
        for entry in entries:
            version = int(entry.version) if entry.version.isdigit() else 0
            ready = entry.state == "READY"
            known = latest.get(entry.name)
            # The latest ready version wins; without one, the latest version at all.
            if known is None or (ready, version) > (known[1], known[0]):
                latest[entry.name] = (version, ready)
        models = []
        for name, (version, ready) in latest.items():
            parsed = self._parsed.get((name, version))
            if parsed is None and ready:
                config = await self._triton.model_config(name)
                parameters = {key: value.string_value for key, value in config.parameters.items()}
                parsed = parse_model(name, version, True, parameters)
                self._parsed[(name, version)] = parsed
                if parsed.problem:
                    LOG.warning("model %s v%d is left out of routing: %s", name, version, parsed.problem)
                else:
                    LOG.info("model %s v%d registered: task %s, tier %d", name, version, parsed.task, parsed.tier)
            if parsed is None or not ready:
                parsed = RegisteredModel(name=name, version=version, ready=False, problem="not ready in Triton")
            models.append(parsed)
        self.snapshot = RegistrySnapshot(models)
        return self.snapshot

    def start(self) -> None:
        """Starts refreshing in the background."""
        self._task = asyncio.create_task(self._run(), name="registry-refresh")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            try:
                await self.refresh()
            except InferScaleError as error:
                LOG.warning("registry refresh failed, keeping the last snapshot: %s", error)

    async def stop(self) -> None:
        """Stops refreshing."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
