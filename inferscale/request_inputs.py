"""A router request's inputs from what a person gives: a digit, a .npy tensor, a text, an ARC task file or a prompt.

The command line and the demo build their requests here. Pure: no gRPC. A file is measured
before it is read, so that no input costs more than the largest tensor a request may carry.
Faults raise ValueError with a message that names the input.
"""

from __future__ import annotations

import io
import json
import pathlib
import sys
from collections.abc import Sequence

import numpy as np

from inferscale.arc.tasks import Grid, Task, parse_task, to_grid
from inferscale.models.digits import N_PIXELS, load_split
from inferscale.tensors import MAX_TENSOR_BYTES, bytes_tensor, from_numpy
from inferscale.v1 import common_pb2

# The input of the intents task's model (model_repository/intent_classifier).
DEFAULT_TEXT_INPUT = "TEXT"
# The input through which the ARC solvers take a whole task (model_repository/arc_*).
ARC_TASK_INPUT = "TASK"


def digits_holdout() -> tuple[np.ndarray, np.ndarray]:
    """The digits holdout images and their labels, as inferscale.models.digits splits them."""
    split = load_split()
    return split.x_holdout, split.y_holdout


def holdout_digit(index: int) -> tuple[np.ndarray, str]:
    """The holdout image ``index`` as a [1, 64] FP32 row, and its true label."""
    images, labels = digits_holdout()
    if not 0 <= index < len(images):
        raise ValueError(f"--digit {index} is outside the holdout set: pick 0..{len(images) - 1}")
    return images[index : index + 1].astype(np.float32), str(labels[index])


def _read_bounded(path: str, what: str) -> bytes:
    """The bytes of ``path``, refused unread when it is larger than one tensor may be."""
    try:
        size = pathlib.Path(path).stat().st_size
        if size > MAX_TENSOR_BYTES:
            raise ValueError(f"{what} {path} has {size} bytes, more than the {MAX_TENSOR_BYTES} a tensor may carry")
        return pathlib.Path(path).read_bytes()
    except OSError as error:
        raise ValueError(f"{what} {path}: {error.strerror or error}") from None


def read_pixels(path: str) -> np.ndarray:
    """One 8x8 image as a [1, 64] FP32 row: a .npy array, or 64 numbers separated by spaces, commas
    or newlines ("-" reads stdin)."""
    data = sys.stdin.buffer.read(MAX_TENSOR_BYTES) if path == "-" else _read_bounded(path, "--pixels-file")
    try:
        if path.endswith(".npy"):
            values = _load_npy(data)
        else:
            values = np.array([float(token) for token in data.decode().replace(",", " ").split()])
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"--pixels-file {path}: {error}") from None
    values = np.asarray(values, dtype=np.float32)
    if values.size != N_PIXELS:
        raise ValueError(
            f"--pixels-file {path}: holds {values.size} values; an 8x8 image needs {N_PIXELS} (pixel values 0..16)"
        )
    return values.reshape(1, N_PIXELS)


def _load_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def npy_tensor(spec: str) -> common_pb2.InferTensor:
    """The tensor of ``FILE[:NAME]``, a .npy file sent as it is; NAME defaults to the file's stem
    (``IMAGE.npy`` is the input ``IMAGE``). Big-endian arrays are sent little-endian, as Triton reads them."""
    path, separator, name = spec.rpartition(":")
    if not separator or not path.endswith(".npy"):
        path, name = spec, pathlib.Path(spec).stem
    if not name:
        raise ValueError(f"--npy {spec}: the input's name after ':' is empty")
    data = _read_bounded(path, "--npy")
    try:
        array = _load_npy(data)
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        return from_numpy(name, array)
    except ValueError as error:
        raise ValueError(f"--npy {path}: {error}") from None


def text_tensor(text: str, name: str = DEFAULT_TEXT_INPUT) -> common_pb2.InferTensor:
    """A text task's input (the intents task's ``TEXT``): one BYTES element."""
    return bytes_tensor(name, [text])


def read_arc_task(path: str) -> Task:
    """An ARC task from its JSON file (the official format: train and test pairs)."""
    data = _read_bounded(path, "--arc-task")
    try:
        return parse_task(pathlib.Path(path).stem, json.loads(data))
    except ValueError as error:
        raise ValueError(f"--arc-task {path}: {error}") from None


def arc_task_tensor(task: Task, test_index: int = 0) -> common_pb2.InferTensor:
    """What the ARC solvers take: the task's training pairs and one test input, never its answer."""
    if not 0 <= test_index < len(task.test):
        raise ValueError(f"task {task.id} has {len(task.test)} test inputs: pick 0..{len(task.test) - 1}")
    sent = {
        "train": [{"input": pair.input, "output": pair.output} for pair in task.train],
        "test": [{"input": task.test[test_index].input}],
    }
    return bytes_tensor(ARC_TASK_INPUT, [json.dumps(sent)])


def grid_matches(label: str, grid: Grid) -> bool:
    """Whether a grid answer's label (its JSON) is ``grid``."""
    try:
        return to_grid(json.loads(label), "answer") == grid
    except ValueError:
        return False


def chat_context(system: str | None, examples: Sequence[tuple[str, str]]) -> list[common_pb2.ChatMessage]:
    """The turns before a prompt: a system instruction, then each example as a user question and
    the assistant's answer (few-shot)."""
    turns = [common_pb2.ChatMessage(role="system", content=system)] if system else []
    for question, answer in examples:
        turns.append(common_pb2.ChatMessage(role="user", content=question))
        turns.append(common_pb2.ChatMessage(role="assistant", content=answer))
    return turns


def text_prompt(
    prompt: str,
    context: Sequence[common_pb2.ChatMessage] = (),
    *,
    max_tokens: int = 0,
    temperature: float | None = None,
) -> common_pb2.TextPrompt:
    """A text task's prompt; max_tokens 0 and no temperature leave both to the router's defaults."""
    sampling = common_pb2.SamplingLimits(max_tokens=max_tokens)
    if temperature is not None:
        sampling.temperature = temperature
    return common_pb2.TextPrompt(prompt=prompt, context=list(context), sampling=sampling)
