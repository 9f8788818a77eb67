"""The Triton python-backend adapter of the digits complexity model: ``IMAGE`` in, ``COMPLEXITY`` out.

Imported by ``model_repository/digits_complexity/1/model.py``; it only runs inside Triton's python
backend stub, where ``triton_python_backend_utils`` exists.
"""

from __future__ import annotations

import os

import numpy as np
import triton_python_backend_utils as pb_utils

from inferscale.models.complexity import OUTPUT, ComplexityModel
from inferscale.models.digits import WEIGHTS_FILE
from inferscale.models.triton_adapter import INPUT, Refused, answer_each


class TritonPythonModel:
    """One model instance: loads the weights once, then scores each request's images."""

    def initialize(self, args: dict[str, str]) -> None:
        """Loads ``weights.npz`` of this model version; a missing file marks the model unavailable."""
        self.model = ComplexityModel.from_npz(os.path.join(args["model_repository"], args["model_version"], WEIGHTS_FILE))

    def execute(self, requests: list) -> list:
        """Scores each request's ``IMAGE`` (FP32 [N, 64]): ``COMPLEXITY``, FP32 [N, 1], or an error naming what was wrong."""
        return answer_each(requests, INPUT, self._answer)

    def _answer(self, request, values: np.ndarray) -> list:  # type: ignore[no-untyped-def]
        try:
            scores = self.model.predict(values)
        except ValueError as exc:
            raise Refused(f"{INPUT}: {exc}") from None
        return [pb_utils.Tensor(OUTPUT, scores)]

    def finalize(self) -> None:
        """Releases the weights."""
        self.model = None
