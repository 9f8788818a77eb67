"""The Triton python-backend adapter of the text models: UTF-8 strings in, one FP32 array out.

Imported by ``model_repository/text_embedding`` and ``model_repository/intent_classifier``; it only
runs inside Triton's python backend stub, where ``triton_python_backend_utils`` exists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import triton_python_backend_utils as pb_utils

from inferscale.models.text_embedding import decode_texts
from inferscale.models.triton_adapter import error_response, required_input

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
        assert self.predict is not None
        responses = []
        for request in requests:
            values, refused = required_input(request, INPUT)
            if refused is not None:
                responses.append(refused)
                continue
            try:
                texts = decode_texts(values)
            except (ValueError, TypeError) as exc:
                responses.append(error_response(f"{INPUT}: {exc}", pb_utils.TritonError.INVALID_ARG))
                continue
            try:
                output = self.predict(texts)
            except Exception as exc:  # noqa: BLE001 - an answer per request beats a failed batch
                responses.append(error_response(f"inference failed: {type(exc).__name__}: {exc}", pb_utils.TritonError.INTERNAL))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output_name, output)]))
        return responses

    def finalize(self) -> None:
        """Releases the model."""
        self.predict = None
