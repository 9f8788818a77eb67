"""The Triton python-backend adapter of the text models: UTF-8 strings in, one FP32 array out.

Imported by ``model_repository/text_embedding`` and ``model_repository/intent_classifier``; it only
runs inside Triton's python backend stub, where ``triton_python_backend_utils`` exists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import triton_python_backend_utils as pb_utils

from inferscale.models.text_embedding import decode_texts
from inferscale.models.triton_adapter import Refused, answer_each

INPUT = "TEXT"


class TextModel:
    """One model instance: ``load`` builds the predictor once; each request's texts go through it independently."""

    # The output tensor's name, as the model's config.pbtxt declares it.
    output_name = ""

    def load(self) -> Callable[[Sequence[str]], np.ndarray]:
        """Returns the function from a batch of texts to the output array; subclasses define it."""
        raise NotImplementedError

    def initialize(self, args: dict[str, str]) -> None:
        """Loads the model; an exception (a missing package, a file not the pinned one) marks it unavailable."""
        self.predict: Callable[[Sequence[str]], np.ndarray] | None = self.load()

    def execute(self, requests: list) -> list:
        """Answers each request's ``TEXT`` (BYTES [N], UTF-8) with its output, FP32 [N, ...], or an error naming the fault."""
        return answer_each(requests, INPUT, self._answer)

    def _answer(self, request, values: np.ndarray) -> list:  # type: ignore[no-untyped-def]
        assert self.predict is not None
        try:
            texts = decode_texts(values)
        except (ValueError, TypeError) as exc:
            raise Refused(f"{INPUT}: {exc}") from None
        return [pb_utils.Tensor(self.output_name, self.predict(texts))]

    def finalize(self) -> None:
        """Releases the model."""
        self.predict = None
