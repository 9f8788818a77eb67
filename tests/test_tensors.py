"""Tensor validation and conversion in Triton's v2 layout."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

import inferscale.tensors as tensors
from inferscale.errors import InvalidArgument
from inferscale.tensors import bytes_tensor, from_numpy, to_numpy, validate_tensor
from inferscale.v1 import common_pb2


def test_numpy_round_trip_keeps_values_shape_and_datatype() -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    tensor = from_numpy("X", array)
    assert (tensor.datatype, list(tensor.shape)) == ("FP32", [3, 4])
    validate_tensor(tensor, "x")
    np.testing.assert_array_equal(to_numpy(tensor), array)


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (common_pb2.InferTensor(datatype="FP32", shape=[1]), r"x\.name"),
        (common_pb2.InferTensor(name="X", datatype="FP128", shape=[1]), "'FP128' is not one of"),
        (common_pb2.InferTensor(name="X", datatype="FP32", shape=[-1, 4]), "negative"),
        (common_pb2.InferTensor(name="X", datatype="INT64", shape=[2], raw_contents=b"\0" * 8), "needs 16"),
    ],
)
def test_malformed_tensors_are_refused_with_the_reason(tensor: common_pb2.InferTensor, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_tensor(tensor, "x")


@pytest.mark.parametrize(
    ("shape", "message"),
    [([], "at least one dimension"), ([0, 64], "holds no elements")],
)
def test_tensors_without_elements_are_refused(shape: list[int], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_tensor(common_pb2.InferTensor(name="X", datatype="FP32", shape=shape), "x")


def test_a_bytes_tensor_in_triton_layout_passes_validation() -> None:
    tensor = bytes_tensor("TEXT", ["turn on the lights", b""])
    validate_tensor(tensor, "x")
    assert tensor.raw_contents[:4] == (18).to_bytes(4, "little")


@pytest.mark.parametrize(
    ("raw", "shape", "message"),
    [
        (b"\x05\x00\x00\x00abc", [1], "past the end"),
        (b"\x01\x00", [1], "inside the 4-byte length"),
        (b"\x01\x00\x00\x00a", [2], "holds 1 BYTES elements, but shape \\[2\\] needs 2"),
    ],
)
def test_a_malformed_bytes_tensor_is_refused_naming_the_fault(raw: bytes, shape: list[int], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_tensor(common_pb2.InferTensor(name="TEXT", datatype="BYTES", shape=shape, raw_contents=raw), "x")


def test_the_element_count_stops_reading_a_shape_once_it_passes_its_bound() -> None:
    def shape() -> Iterator[int]:
        yield from (2**20, 2**20)
        raise AssertionError("a dimension past the bound was read")

    with pytest.raises(InvalidArgument, match=r"x\.shape holds more than the 16777216 elements"):
        tensors.element_count(shape(), "x")
    assert tensors.element_count([2**12, 2**12], "x") == 2**24


def test_the_element_and_byte_bounds_are_settings() -> None:
    settings = {**os.environ, "INFERSCALE_MAX_TENSOR_ELEMENTS": "1000", "INFERSCALE_MAX_TENSOR_BYTES": "4000"}
    read = subprocess.run(
        [sys.executable, "-c", "import inferscale.tensors as t; print(t.MAX_TENSOR_ELEMENTS, t.MAX_TENSOR_BYTES)"],
        env=settings, capture_output=True, text=True, check=True,
    )
    assert read.stdout.split() == ["1000", "4000"]
