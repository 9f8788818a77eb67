"""A stand-in for ``triton_python_backend_utils``, so that model adapters run in tests outside Triton."""

from __future__ import annotations

import types

import numpy as np


class FakePbUtils(types.ModuleType):
    """Just enough of ``triton_python_backend_utils`` to drive a model adapter outside Triton."""

    def __init__(self) -> None:
        super().__init__("triton_python_backend_utils")

        class Tensor:
            def __init__(self, name: str, array: np.ndarray) -> None:
                self.name, self.array = name, array

            def as_numpy(self) -> np.ndarray:
                return self.array

        class TritonError:
            INTERNAL, INVALID_ARG = 1, 3

            def __init__(self, message: str, code: int = 1) -> None:
                self.message, self.code = message, code

        class InferenceResponse:
            def __init__(
                self, output_tensors: list | None = None, error: TritonError | None = None
            ) -> None:
                self.output_tensors, self.error = output_tensors or [], error

        self.Tensor, self.TritonError, self.InferenceResponse = (
            Tensor,
            TritonError,
            InferenceResponse,
        )

    @staticmethod
    def get_input_tensor_by_name(request: dict, name: str) -> object:
        return request.get(name)
