"""The benchmark's floor, benchmarks.bare_proxy, against the session's real Triton: what it forwards
must be Triton's own answer, errors included, or the floor row would measure something else."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from benchmarks.router_overhead import bare_proxy
from inferscale.suite import Suite

UNTRACED = {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "none"}


def image_input(image: np.ndarray) -> triton_grpc.InferInput:
    tensor = triton_grpc.InferInput("IMAGE", list(image.shape), "FP32")
    tensor.set_data_from_numpy(image)
    return tensor


def test_the_bare_proxy_answers_as_triton_does(suite: Suite) -> None:
    images = np.random.default_rng(7).random((3, 64), dtype=np.float32)
    assert suite.triton_url is not None
    direct = triton_grpc.InferenceServerClient(suite.triton_url)
    with bare_proxy(suite, UNTRACED) as proxy:
        through = triton_grpc.InferenceServerClient(proxy.url)
        expected = direct.infer("digits_linear", [image_input(images)]).as_numpy("PROBS")
        forwarded = through.infer("digits_linear", [image_input(images)]).as_numpy("PROBS")
        np.testing.assert_array_equal(forwarded, expected)
        assert expected.shape == (3, 10)

        # Triton's refusal comes back as Triton sent it: the same status and message.
        with pytest.raises(InferenceServerException) as from_triton:
            direct.infer("no_such_model", [image_input(images)])
        with pytest.raises(InferenceServerException) as through_proxy:
            through.infer("no_such_model", [image_input(images)])
        assert through_proxy.value.status() == from_triton.value.status()
        assert through_proxy.value.message() == from_triton.value.message()
        assert "no_such_model" in through_proxy.value.message()
