"""Keeps the registry in step with Triton: reads the repository index and each model's config, live.

When a model's version changes or the model leaves, ``on_retired`` is told which version went,
so that what it produced stops being served; it returns how many cache entries it removed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from inferscale.errors import InferScaleError, NotFound
from services.orchestrator.registry import RegisteredModel, RegistrySnapshot, parse_model
from services.orchestrator.triton_pool import TritonPool

LOG = logging.getLogger(__name__)


class TritonRegistry:
    """The current RegistrySnapshot, refreshed from Triton every ``refresh_seconds``."""

    def __init__(
        self,
        triton: TritonPool,
        refresh_seconds: float,
        on_retired: Callable[[RegisteredModel], Awaitable[int]] | None = None,
    ) -> None:
        self._triton = triton
        self._on_retired = on_retired
        self._refresh_seconds = refresh_seconds
        self.snapshot = RegistrySnapshot()
        self.retired_entries_removed = 0
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
            if ready:
                # Read every time: a config edited in place is reloaded by Triton under the same version.
                try:
                    config = await self._triton.model_config(name)
                except NotFound:
                    # Unloaded between the index and this read; the next refresh sees it gone.
                    models.append(RegisteredModel(name=name, version=version, ready=False, problem="not ready in Triton"))
                    continue
                parameters = {key: value.string_value for key, value in config.parameters.items()}
                models.append(parse_model(name, version, True, parameters))
            else:
                models.append(RegisteredModel(name=name, version=version, ready=False, problem="not ready in Triton"))
        for model in models:
            known = self.snapshot.get(model.name)
            if known is None or (known.version, known.problem) != (model.version, model.problem):
                if model.problem:
                    LOG.warning("model %s v%d is left out of routing: %s", model.name, model.version, model.problem)
                else:
                    LOG.info("model %s v%d registered: task %s, tier %d", model.name, model.version, model.task, model.tier)
        previous, self.snapshot = self.snapshot, RegistrySnapshot(models)
        for old in previous.models.values():
            new = self.snapshot.get(old.name)
            if old.ready and (new is None or not new.ready or new.version != old.version):
                LOG.info("model %s v%d retired (now %s)", old.name, old.version,
                         f"v{new.version}" if new is not None and new.ready else "gone")
                if self._on_retired is not None:
                    self.retired_entries_removed += await self._on_retired(old)
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
