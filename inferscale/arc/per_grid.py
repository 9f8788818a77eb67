"""Work done once per grid within one solver call: every rule of a task reads the same few grids."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


class PerGrid(Generic[T]):
    """``work(grid, *arguments)`` remembered for each grid's content and the arguments, for the
    life of this object (one solver call, so at most its 17 grids times the arguments tried)."""

    def __init__(self, work: Callable[..., T]) -> None:
        self.work = work
        self.known: dict[tuple[Hashable, ...], T] = {}

    def __call__(self, grid: np.ndarray, *arguments: Hashable) -> T:
        key = (grid.tobytes(), grid.shape, *arguments)
        if key not in self.known:
            self.known[key] = self.work(grid, *arguments)
        return self.known[key]
