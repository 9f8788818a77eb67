"""The Triton python-backend adapter of the ARC solvers: ``TASK`` in, ``ANSWER`` and ``SCORE`` out.

``TASK`` is BYTES [1]: an ARC task as JSON whose "test" holds the one input to solve (its output
absent or ignored). ``ANSWER`` is BYTES [1], the chosen grid as JSON; ``SCORE`` is FP32 [1], its
score on the training pairs. With the optional ``SEED`` (INT64 [1]), the solver answers a fresh
sample: the candidate of rank ``seed mod k`` among its k best distinct candidates.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import numpy as np
import triton_python_backend_utils as pb_utils

from inferscale.arc.solvers import Candidate
from inferscale.arc.tasks import Grid, parse_task
from inferscale.models.triton_adapter import Refused, answer_each

TASK = "TASK"
SEED = "SEED"
# How many of the best distinct candidates a seed picks among.
SAMPLE_AMONG = 3

Solver = Callable[[Sequence[tuple[Grid, Grid]], Grid], list[Candidate]]


class SolverModel:
    """One model instance of one solver: ``solve`` set by the model.py that serves it."""

    solve: Solver

    def initialize(self, args: dict[str, str]) -> None:
        """Nothing to load: the solvers are rules, not weights."""

    def execute(self, requests: list) -> list:
        """Solves each request's task, or answers an error naming what was wrong with it."""
        return answer_each(requests, TASK, self._answer)

    def _answer(self, request, values: np.ndarray) -> list:  # type: ignore[no-untyped-def]
        try:
            raw = values.reshape(-1)
            if raw.size != 1:
                raise ValueError(f"{TASK} must hold one task, not {raw.size}")
            task = parse_task("request", json.loads(raw[0]))
            if len(task.test) != 1:
                raise ValueError(f"the task's 'test' must hold the one input to solve, not {len(task.test)}")
        except ValueError as exc:  # UnicodeDecodeError and JSON errors are ValueErrors too
            raise Refused(f"{TASK}: {exc}") from None
        candidates = type(self).solve([(p.input, p.output) for p in task.train], task.test[0].input)
        chosen = candidates[0]
        seed = pb_utils.get_input_tensor_by_name(request, SEED)
        if seed is not None:
            chosen = candidates[int(seed.as_numpy().reshape(-1)[0]) % min(SAMPLE_AMONG, len(candidates))]
        answer = np.array([json.dumps([list(row) for row in chosen.grid]).encode()], dtype=np.object_)
        return [pb_utils.Tensor("ANSWER", answer), pb_utils.Tensor("SCORE", np.array([chosen.score], dtype=np.float32))]
