"""Tensors in Triton's v2 layout: validation, and conversion to and from numpy where a value must be read."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from inferscale.errors import InvalidArgument
from inferscale.settings import env_int
from inferscale.v1 import common_pb2

# The most dimensions a tensor may have: far above any model's inputs, well below numpy's own
# limit (32), and small enough that reading the shape costs nothing.
MAX_TENSOR_DIMENSIONS = 16
# INFERSCALE_MAX_TENSOR_ELEMENTS: the most elements one tensor may hold (default 2**24, a
# 4096 x 4096 image).
MAX_TENSOR_ELEMENTS = env_int("INFERSCALE_MAX_TENSOR_ELEMENTS", 2**24, minimum=1)
# INFERSCALE_MAX_TENSOR_BYTES: the most bytes one tensor's raw_contents may hold (default 64 MiB,
# the default message bound of inferscale.rpc).
MAX_TENSOR_BYTES = env_int("INFERSCALE_MAX_TENSOR_BYTES", 64 * 2**20, minimum=1)

# Triton's v2 datatype names and their numpy types; BYTES is variable-length and handled apart.
NUMPY_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}


def bytes_elements(tensor: common_pb2.InferTensor, field: str) -> list[bytes]:
    """The elements of a BYTES tensor in Triton's raw layout (each a 4-byte little-endian length,
    then that many bytes); raises InvalidArgument, naming ``field``, when the layout is broken."""
    raw = tensor.raw_contents
    expected = element_count(tensor.shape, field)
    offset = 0
    elements = []
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidArgument(f"{field}.raw_contents ends inside the 4-byte length of BYTES element {len(elements)}")
        length = int.from_bytes(raw[offset : offset + 4], "little")
        if offset + 4 + length > len(raw):
            raise InvalidArgument(
                f"{field}.raw_contents BYTES element {len(elements)} declares {length} bytes past the end"
            )
        elements.append(raw[offset + 4 : offset + 4 + length])
        offset += 4 + length
    count = len(elements)
    if count != expected:
        raise InvalidArgument(
            f"{field}.raw_contents holds {count} BYTES elements, but shape {list(tensor.shape)} needs {expected}"
        )
    return elements


def element_count(shape: Iterable[int], field: str) -> int:
    """Returns the number of elements of ``shape``; raises InvalidArgument, naming ``field``, as soon
    as the running product passes MAX_TENSOR_ELEMENTS, so that no shape costs more than reading it."""
    count = 1
    for dim in shape:
        count *= dim
        if count > MAX_TENSOR_ELEMENTS:
            raise InvalidArgument(f"{field}.shape holds more than the {MAX_TENSOR_ELEMENTS} elements a tensor may have")
    return count


def validate_tensor(tensor: common_pb2.InferTensor, field: str) -> None:
    """Raises InvalidArgument, naming ``field``, unless the tensor's bytes match its datatype and shape
    and it stays within MAX_TENSOR_DIMENSIONS, MAX_TENSOR_ELEMENTS and MAX_TENSOR_BYTES.

    Each check costs at most what the message it reads did to receive: the number of dimensions
    is bounded before any is read, and the element count stops at its bound.
    """
    if not tensor.name:
        raise InvalidArgument(f"{field}.name must not be empty")
    dtype = NUMPY_DTYPES.get(tensor.datatype)
    if dtype is None and tensor.datatype != "BYTES":
        known = ", ".join(sorted([*NUMPY_DTYPES, "BYTES"]))
        raise InvalidArgument(f"{field}.datatype {tensor.datatype!r} is not one of {known}")
    dimensions = len(tensor.shape)
    if not dimensions:
        raise InvalidArgument(f"{field}.shape must have at least one dimension")
    if dimensions > MAX_TENSOR_DIMENSIONS:
        raise InvalidArgument(f"{field}.shape has {dimensions} dimensions, more than the {MAX_TENSOR_DIMENSIONS} allowed")
    if any(dim < 0 for dim in tensor.shape):
        raise InvalidArgument(f"{field}.shape {list(tensor.shape)} has a negative dimension")
    if 0 in tensor.shape:
        raise InvalidArgument(f"{field}.shape {list(tensor.shape)} holds no elements; there is nothing to infer")
    if len(tensor.raw_contents) > MAX_TENSOR_BYTES:
        raise InvalidArgument(
            f"{field}.raw_contents has {len(tensor.raw_contents)} bytes, more than the {MAX_TENSOR_BYTES} allowed"
        )
    if dtype is None:
        bytes_elements(tensor, field)
        return
    expected = element_count(tensor.shape, field) * dtype.itemsize
    if len(tensor.raw_contents) != expected:
        raise InvalidArgument(
            f"{field}.raw_contents has {len(tensor.raw_contents)} bytes, but shape "
            f"{list(tensor.shape)} of {tensor.datatype} needs {expected}"
        )


FLOATING_DATATYPES = frozenset({"FP16", "FP32", "FP64"})


def require_finite(tensor: common_pb2.InferTensor, field: str) -> None:
    """Raises InvalidArgument, naming ``field`` and the first offending element, when a validated
    floating-point tensor holds NaN or infinity."""
    if tensor.datatype not in FLOATING_DATATYPES:
        return
    values = to_numpy(tensor).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise InvalidArgument(
            f"{field} holds {bad.size} NaN or infinite values (the first at flat index {int(bad[0])}); "
            "this router refuses non-finite inputs"
        )


def to_numpy(tensor: common_pb2.InferTensor) -> np.ndarray:
    """Views a validated tensor's bytes as a numpy array, without copying."""
    return np.frombuffer(tensor.raw_contents, dtype=NUMPY_DTYPES[tensor.datatype]).reshape(
        tuple(tensor.shape)
    )


def bytes_tensor(name: str, items: Sequence[bytes | str]) -> common_pb2.InferTensor:
    """Builds a one-dimensional BYTES tensor in Triton's raw layout from strings or byte strings."""
    raw = bytearray()
    for item in items:
        data = item.encode() if isinstance(item, str) else item
        raw += len(data).to_bytes(4, "little") + data
    return common_pb2.InferTensor(name=name, datatype="BYTES", shape=[len(items)], raw_contents=bytes(raw))


def from_numpy(name: str, array: np.ndarray) -> common_pb2.InferTensor:
    """Builds a tensor from a numpy array of a datatype Triton knows."""
    for datatype, dtype in NUMPY_DTYPES.items():
        if array.dtype == dtype:
            return common_pb2.InferTensor(
                name=name,
                datatype=datatype,
                shape=list(array.shape),
                raw_contents=np.ascontiguousarray(array).tobytes(),
            )
    raise ValueError(f"numpy dtype {array.dtype} has no Triton datatype")


def tensors_digest_parts(tensors: Sequence[common_pb2.InferTensor]) -> list[bytes]:
    """Returns the byte strings that identify a list of tensors, in order, for hashing."""
    parts: list[bytes] = []
    for tensor in tensors:
        parts.append(f"{tensor.name}|{tensor.datatype}|{list(tensor.shape)}|".encode())
        parts.append(tensor.raw_contents)
    return parts
