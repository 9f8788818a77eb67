"""The Triton python-backend adapter of the ARC solvers: ``TASK`` in, ``ANSWER`` and ``SCORE`` out.

``TASK`` is BYTES [1]: an ARC task as JSON whose "test" holds the one input to solve (its output
absent or ignored). ``ANSWER`` is BYTES [n], the solver's best distinct candidate grids as JSON,
best first, at most ``CANDIDATES`` of them; ``SCORE`` is FP32 [n], each one's score on the
training pairs. With the optional ``SEED`` (INT64 [1]), the solver answers a fresh sample: its
ranked candidates from rank ``seed mod k`` on, k the number of its best candidates it samples
among, so a search that samples it again sees answers it has not seen first.
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from inferscale.arc.catalogue import SOLVERS, Solver
from inferscale.arc.solvers import Candidate
from inferscale.arc.tasks import parse_task
from inferscale.models.triton_adapter import Refused, answer_each

TASK = "TASK"
SEED = "SEED"
# How many candidates one answer holds: ARC allows two attempts, and a third lets a vote across
# solvers find an answer that two of them rank second and third.
CANDIDATES = 3
# How many of the best distinct candidates a seed starts among.
SAMPLE_AMONG = 3


class SolverModel:
    """One model instance of the solver its config's "solver" parameter names."""

    solve: Solver

    def initialize(self, args: dict[str, str]) -> None:
        """Picks the solver; there is nothing to load, the solvers are rules, not weights."""
        parameters = json.loads(args["model_config"]).get("parameters", {})
        name = parameters.get("solver", {}).get("string_value", "")
        if name not in SOLVERS:
            raise pb_utils.TritonModelException(f"parameter 'solver' must be one of {sorted(SOLVERS)}, not {name!r}")
        self.solve = SOLVERS[name]

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
        except RecursionError:
            # json.loads recurses once per level: a few thousand "[" exhaust the stack.
            raise Refused(f"{TASK}: the JSON nests deeper than Python can read") from None
        candidates = self.solve([(p.input, p.output) for p in task.train], task.test[0].input)
        if not candidates:
            # No rule of this family applies: the test input itself, scored 0, is its answer.
            candidates = [Candidate(task.test[0].input, 0.0, "no rule applies")]
        seed = pb_utils.get_input_tensor_by_name(request, SEED)
        first = int(seed.as_numpy().reshape(-1)[0]) % min(SAMPLE_AMONG, len(candidates)) if seed is not None else 0
        chosen = candidates[first : first + CANDIDATES]
        answers = np.array([json.dumps([list(row) for row in c.grid]).encode() for c in chosen], dtype=np.object_)
        scores = np.array([c.score for c in chosen], dtype=np.float32)
        return [pb_utils.Tensor("ANSWER", answers), pb_utils.Tensor("SCORE", scores)]
