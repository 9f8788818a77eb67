"""The Triton python-backend adapter of every digits model: moves tensors between Triton and :mod:`inferscale.models.digits`.

Imported by each ``model_repository/<model>/<version>/model.py``; it only runs inside Triton's
python backend stub, where ``triton_python_backend_utils`` exists.
"""

from __future__ import annotations

import os

import numpy as np
import triton_python_backend_utils as pb_utils

from inferscale.models.digits import load_model, refine, sampled_view, validate_images

INPUT = "IMAGE"
OUTPUT = "PROBS"
# Optional: an earlier model's PROBS for the same images, which a refining model takes into account.
PRIOR = "PRIOR"
# Optional: a seed (INT64, shape [1]); when sent, the model answers a random view of the images,
# a fresh sample for adaptive search.
SEED = "SEED"


class TritonPythonModel:
    """One model instance: loads the weights once, then answers requests with numpy."""

    def initialize(self, args: dict[str, str]) -> None:
        """Loads the weights of this model version.

        Parameters
        ----------
        args : dict of str to str
            Triton's instance arguments; ``model_name``, ``model_repository`` (the model's folder)
            and ``model_version`` locate ``weights.npz``.

        Raises
        ------
        KeyError, FileNotFoundError, ValueError
            If the model is unknown or its weights are missing or malformed; Triton then marks
            the model unavailable with this message.
        """
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        self.model = load_model(args["model_name"], version_dir)

    def execute(self, requests: list) -> list:
        """Classifies the images of each request independently.

        Parameters
        ----------
        requests : list of pb_utils.InferenceRequest
            Each with an ``IMAGE`` tensor, FP32, shape [N, 64], pixel values 0..16, and, where
            the model's config declares it, an optional ``PRIOR`` tensor, FP32 [N, 10]: an
            earlier model's answer to refine, and an optional ``SEED``, INT64 [1]: answer a
            random view of the images instead (a fresh sample).

        Returns
        -------
        list of pb_utils.InferenceResponse
            One per request, in order: ``PROBS``, FP32 [N, 10], or an error naming what was wrong
            with that request, so one bad request does not fail the others.
        """
        return answer_each(requests, INPUT, self._answer)

    def _answer(self, request, values: np.ndarray) -> list:  # type: ignore[no-untyped-def]
        try:
            images = validate_images(values)
        except ValueError as exc:
            raise Refused(f"{INPUT}: {exc}") from None
        seed = pb_utils.get_input_tensor_by_name(request, SEED)
        if seed is not None:
            seeds = seed.as_numpy().reshape(-1)
            if seeds.size != 1:
                raise Refused(f"{SEED} must hold one integer, not {seeds.size}")
            images = sampled_view(images, int(seeds[0]))
        probs = self.model.predict_proba(images)
        prior = pb_utils.get_input_tensor_by_name(request, PRIOR)
        if prior is not None:
            try:
                probs = refine(probs, prior.as_numpy())
            except ValueError as exc:
                raise Refused(f"{PRIOR}: {exc}") from None
        return [pb_utils.Tensor(OUTPUT, probs)]

    def finalize(self) -> None:
        """Releases the weights."""
        self.model = None


class Refused(ValueError):
    """The request, not the model, is at fault: it is answered INVALID_ARG with this message."""


def answer_each(requests: list, input_name: str, answer) -> list:  # type: ignore[no-untyped-def]
    """One response per request, in order, so that one bad request does not fail the others.

    Each is the output tensors ``answer(request, values)`` returns for the request's input
    ``input_name`` (as numpy). A missing input, or a Refused that ``answer`` raises, becomes an
    INVALID_ARG error naming the fault; any other exception an INTERNAL "inference failed" error.
    """
    responses = []
    for request in requests:
        tensor = pb_utils.get_input_tensor_by_name(request, input_name)
        if tensor is None:
            responses.append(error_response(f"missing input tensor {input_name!r}", pb_utils.TritonError.INVALID_ARG))
            continue
        try:
            responses.append(pb_utils.InferenceResponse(output_tensors=answer(request, tensor.as_numpy())))
        except Refused as exc:
            responses.append(error_response(str(exc), pb_utils.TritonError.INVALID_ARG))
        except Exception as exc:  # noqa: BLE001 - an answer per request beats a failed batch
            responses.append(error_response(f"inference failed: {type(exc).__name__}: {exc}", pb_utils.TritonError.INTERNAL))
    return responses


def error_response(message: str, code: int) -> pb_utils.InferenceResponse:
    """An error response for one request; the others in the batch still get their answers."""
    # The code reaches the caller as the gRPC status: INVALID_ARG tells InferScale that the
    # request, not this server, is at fault, so no replica is taken out of rotation for it.
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))
