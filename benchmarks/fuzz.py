"""Malformed and near-valid requests against every public RPC of a running suite: clear statuses, no restart, flat memory.

    python -m benchmarks.fuzz [--requests 10000] [--seed 0]

Starts a private suite (a copy of the model repository, its own Triton in explicit model
control, free ports, no tracing) and sends generated requests, one at a time, to every RPC the
four services declare in their protos (found from the descriptors, so a new RPC is fuzzed
without a change here). Each RPC's requests are made four ways (KIND_SHARES): near-valid (a
hand-written strategy per RPC that mostly passes validation, so that handlers, the orchestrator
and the models see odd values), any message of the request's type (every field odd: huge and
negative numbers, NaN, odd strings, long repeated fields, deep or huge tensor shapes, unknown enum
values), a valid message mangled on the wire (truncated, invalid UTF-8, unknown fields, nested
groups, a length past the end) and plain garbage bytes. Most calls carry the right token, so that
they reach validation and the handlers; a share carries none, a wrong one or another role's.

Admin RPCs (LoadModel, UnloadModel, ProposeRoutingPolicy, Invalidate) are fuzzed with the admin
token too, but LoadModel, UnloadModel and ProposeRoutingPolicy only ever name models and tasks
that do not exist (every name they carry starts with ABSENT_PREFIX): the check at the end needs
the models the suite serves. Invalidate takes any name: it only empties cache entries.

Checks, each printed, and the exit status non-zero when one fails: no UNKNOWN or INTERNAL
status and every refusal explained (a message); every service, Triton and Triton's backend stubs
the same processes at the end as at the start; each one's resident memory at the end within
MEMORY_GROWTH_LIMIT of what it held after the warm-up (see fuzz() and ALLOCATOR_ENV); and a
holdout digit answered correctly through the router after it all, as before. Prints progress every 1,000
requests, then a table of the statuses per RPC, and writes it to results/fuzz.md.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import pathlib
import re
import shutil
import sys
import tempfile
import time
import zlib
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import numpy as np
import psutil
from google.protobuf import text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from benchmarks.strategies import RESULTS
from inferscale.auth import Access, access_of, bearer_metadata
from inferscale.models.digits import load_split
from inferscale.rpc import open_blocking_channel
from inferscale.suite import REPO_ROOT, SERVICES, Suite, SuitePorts
from inferscale.tensors import bytes_tensor, from_numpy
from inferscale.triton.launcher import TritonSettings
from inferscale.v1 import (
    cache_service_pb2,
    common_pb2,
    monitor_service_pb2,
    orchestrator_service_pb2,
    router_service_pb2,
)

DEFAULT_REQUESTS = 10_000
# Each (RPC, kind)'s calls are split over ROUNDS rounds, all of them in every round. The first
# round, after each RPC's largest request LARGEST_REPEATS times, is the warm-up: every code path
# taken, buffers, caches and the models' arenas at their working size. Resident memory is read
# after it and after every later round.
ROUNDS = 4
LARGEST_REPEATS = 2
# How many of the latest readings of resident memory a reading takes the least of (MemoryFloor).
FLOOR_READINGS = 50
MEMORY_GROWTH_LIMIT = 1.10
CALL_TIMEOUT_SECONDS = 30.0
PROGRESS_EVERY = 1_000
# Statuses that say the server is at fault rather than the request: never acceptable.
SERVER_FAULTS = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL})
# Statuses a malformed request may clearly get. Any other (UNAVAILABLE, DEADLINE_EXCEEDED...) is
# counted and its first requests kept for the report: with every process up it needs explaining.
CLEAR_STATUSES = frozenset({
    grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.OUT_OF_RANGE,
})
# Each cache level's bound in the fuzzed suite: small enough that the warm-up's stores fill every
# level, so that a level filling up to its bound, as the design allows, does not read as growth.
CACHE_BYTES_PER_LEVEL = 64 * 1024
# glibc's allocator in the services, set so that a block of 64 KiB or more goes back to the system
# when it is freed. By default the threshold rises to the largest block freed so far, and such
# blocks then stay in the heap: resident memory keeps the high-water mark of the largest requests
# and steps up or down by more than 10% with their order, which says nothing of a leak. With these
# it follows what the process holds.
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "131072"}
# Every name an admin call with the admin token carries starts with this: no model or task has it.
ABSENT_PREFIX = "absent-"
ADMIN_NAME_FIELDS = {"LoadModel": "model_name", "UnloadModel": "model_name", "ProposeRoutingPolicy": "task"}
INFER_PATH = "/inferscale.v1.RouterService/Infer"
SERVICE_MODULES = (router_service_pb2, orchestrator_service_pb2, cache_service_pb2, monitor_service_pb2)
# How a call's request is made, and each way's share of an RPC's calls. An RPC without a
# near-valid strategy gets any message instead; one whose request has no fields, only bytes.
KIND_SHARES = {"near-valid": 4, "any message": 3, "mangled": 1, "garbage": 1}
# Which credentials the calls carry, in turn: mostly the right token, so that they reach the
# handler; else none, a wrong or malformed one, or the token of a role that may not make the call.
CREDENTIALS = ("right", "right", "none", "right", "right", "wrong", "right", "right", "another role", "right")
# The token each kind of RPC takes, and the token of a role that may not make it.
RIGHT_ROLES = {Access.CLIENT: "client", Access.SERVICE: "service", Access.ADMIN: "admin"}
OTHER_ROLES = {Access.CLIENT: "service", Access.SERVICE: "client", Access.ADMIN: "service"}
# Infer is the only RPC clients reach: it gets this many calls for every call of another RPC.
INFER_SHARE = 3

MODEL_NAMES = (
    "digits_linear", "digits_mlp", "digits_ensemble", "digits_complexity", "intent_classifier", "text_embedding",
    "arc_tiling", "arc_programs_1", "missing", "",
)
TASKS = ("digits", "intents", "arc", "", "nope")
# The most strings, and the longest, in a near-valid text tensor.
MOST_TEXTS = 3
LONGEST_TEXT = "word " * 2_000
# A few request ids shared by Infer, the events and the feedback, so that feedback finds requests to score.
REQUEST_IDS = tuple(f"fuzz-{index}" for index in range(16))
DATATYPES = ["FP32", "FP16", "FP64", "INT8", "INT32", "INT64", "UINT8", "BOOL", "BYTES", "fp32", "", "FP128", "STRING"]
ODD_FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 0.5, 0.9, 1.0, 1.5, -0.1, math.nan, math.inf])
)
# Lengths just past the bounds the services state, and far past them.
LONG_TEXT = (129, 257, 513, 4_097, 70_000)
LONG_REPEATED_SCALARS = (17, 33, 385, 4_097, 10_001, 100_000)
LONG_REPEATED_MESSAGES = (17, 33, 257, 10_001)
ODD_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from([*MODEL_NAMES, *TASKS, " ", "\x00", "\t\n", "../../etc/passwd", "%s%n{}", "\u202e", "😀" * 8]),
    st.sampled_from(LONG_TEXT).map(lambda n: "x" * n),
)


def mostly(usual: st.SearchStrategy, odd: st.SearchStrategy) -> st.SearchStrategy:
    """``usual`` nine times in ten, else ``odd``: a near-valid request keeps most fields sane."""
    return st.integers(0, 9).flatmap(lambda draw: odd if draw == 0 else usual)


# ---------------------------------------------------------------------------------------------
# The RPCs, read from the protos.


@dataclass(frozen=True)
class Rpc:
    """One public RPC: where it is served, its request type and who may call it."""

    service: str
    method: str
    path: str
    request: type[Message]
    response: type[Message]
    streaming: bool
    access: Access


def public_rpcs() -> tuple[Rpc, ...]:
    """Every RPC the four services declare, in proto order; fails for one that inferscale.auth does not list."""
    rpcs = []
    for module in SERVICE_MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                path = f"/{service.full_name}/{method.name}"
                access = access_of(path)
                if access is None:
                    raise LookupError(f"{path} is missing from inferscale.auth.RPC_ACCESS")
                rpcs.append(
                    Rpc(
                        service=service.name.removesuffix("Service").lower(),
                        method=method.name,
                        path=path,
                        request=GetMessageClass(method.input_type),
                        response=GetMessageClass(method.output_type),
                        streaming=method.client_streaming or method.server_streaming,
                        access=access,
                    )
                )
    return tuple(rpcs)


# ---------------------------------------------------------------------------------------------
# Any message of a type: every field odd, built from the descriptor.

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_ENUM: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
# In the largest message: the lengths tried for the strings of an element of a repeated field,
# longest first, and the values of a repeated field within such an element.
ELEMENT_CHARS = (1_000, 400, 200, 100, 40, 10, 0)
ELEMENT_REPEATS = 3
# The most bytes one long repeated field may weigh.
MAX_REPEATED_BYTES = 4 * 2**20
# The requests kept for the report of each RPC and status that is a fault.
EXAMPLES_KEPT = 3
# How much of a long field a summary shows.
SHOWN_ELEMENTS = 3
SHOWN_CHARS = 40
# Nested messages deeper than this are left empty: Event > StepEvent > EscalationStep > Answer is four.
MAX_DEPTH = 4


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    """Integers of [low, high]: its edges, small ones, and any."""
    edges = [value for value in (0, 1, -1, 2, 7, 64, 4_097, low, high, low + 1, high - 1) if low <= value <= high]
    small = st.integers(-3, 70).filter(lambda v: low <= v <= high)
    return st.one_of(st.sampled_from(edges), small, st.integers(low, high))


def any_int64() -> st.SearchStrategy[int]:
    """Any value an int64 field holds, its edges often."""
    return _integers(*_INT_RANGES[FieldDescriptor.TYPE_INT64])


def _scalar(descriptor: FieldDescriptor, depth: int) -> st.SearchStrategy:
    kind = descriptor.type
    if kind in _INT_RANGES:
        return _integers(*_INT_RANGES[kind])
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_FLOAT:
        return st.one_of(st.floats(width=32), st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 3.4e38]))
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return ODD_FLOATS
    if kind == FieldDescriptor.TYPE_STRING:
        return ODD_TEXT
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.sampled_from(LONG_TEXT).map(lambda n: b"\xff" * n))
    return any_message(descriptor.message_type, depth + 1)


def _size(value: object) -> int:
    return value.ByteSize() if isinstance(value, Message) else len(value) if isinstance(value, str | bytes) else 8


def repeated_past_bound(element: object, count: int) -> list:
    """``element`` ``count`` times; an empty one instead when they would weigh more than
    MAX_REPEATED_BYTES, so that a message stays far below gRPC's size bound: the count is what is tested."""
    if _size(element) * count > MAX_REPEATED_BYTES:
        element = type(element)()
    return [element] * count


def _repeated(element: st.SearchStrategy, sizes: tuple[int, ...]) -> st.SearchStrategy[list]:
    """Short lists of distinct elements, or one element repeated to a length past a bound."""
    return st.one_of(
        st.lists(element, max_size=4),
        st.tuples(element, st.sampled_from(sizes)).map(lambda pair: repeated_past_bound(*pair)),
    )


def _set(message: Message, name: str, value: object) -> None:
    target = getattr(message, name)
    if isinstance(value, list):
        target.extend(value)
    elif isinstance(value, Message):
        target.CopyFrom(value)
    else:
        setattr(message, name, value)


@functools.cache
def any_message(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Any message of the type ``descriptor`` names, each field left unset or given an odd value."""
    message_class = GetMessageClass(descriptor)
    if depth > MAX_DEPTH:
        return st.just(message_class())
    fields = {}
    for descriptor_field in descriptor.fields:
        element = _scalar(descriptor_field, depth)
        is_message = descriptor_field.type == FieldDescriptor.TYPE_MESSAGE
        if descriptor_field.is_repeated:
            element = _repeated(element, LONG_REPEATED_MESSAGES if is_message else LONG_REPEATED_SCALARS)
        fields[descriptor_field.name] = st.none() | element

    def build(values: dict[str, object]) -> Message:
        message = message_class()
        for name, value in values.items():
            if value is not None:
                _set(message, name, value)
        return message

    return st.fixed_dictionaries(fields).map(build)


_PLAIN_VALUES = {
    FieldDescriptor.TYPE_BOOL: True,
    FieldDescriptor.TYPE_FLOAT: 1.0,
    FieldDescriptor.TYPE_DOUBLE: 1.0,
}


def largest_message(descriptor: Descriptor, *, chars: int = LONG_TEXT[-1], element: bool = False, depth: int = 0) -> Message:
    """A message of this type that weighs about the most that any_message makes: each string
    ``chars`` long, each repeated field at its longest count and as heavy as MAX_REPEATED_BYTES
    lets it be. Within an element of a repeated field, repeated fields hold ELEMENT_REPEATS values."""
    message = GetMessageClass(descriptor)()
    if depth > MAX_DEPTH:
        return message
    for descriptor_field in descriptor.fields:
        kind = descriptor_field.type
        value: object
        if descriptor_field.is_repeated and kind == FieldDescriptor.TYPE_MESSAGE and not element:
            count = LONG_REPEATED_MESSAGES[-1]
            # The longest strings that keep the field within MAX_REPEATED_BYTES.
            for element_chars in ELEMENT_CHARS:
                value = largest_message(descriptor_field.message_type, chars=element_chars, element=True, depth=depth + 1)
                if value.ByteSize() * count <= MAX_REPEATED_BYTES:
                    break
            value = repeated_past_bound(value, count)
        else:
            if kind == FieldDescriptor.TYPE_MESSAGE:
                value = largest_message(descriptor_field.message_type, chars=chars, element=element, depth=depth + 1)
            elif kind == FieldDescriptor.TYPE_STRING:
                value = "x" * chars
            elif kind == FieldDescriptor.TYPE_BYTES:
                value = b"\xff" * chars
            else:
                value = _PLAIN_VALUES.get(kind, 1)
            if descriptor_field.is_repeated:
                value = [value] * ELEMENT_REPEATS if element else repeated_past_bound(value, LONG_REPEATED_SCALARS[-1])
        _set(message, descriptor_field.name, value)
    return message


# ---------------------------------------------------------------------------------------------
# Near-valid requests, one strategy per RPC.


def tensors() -> st.SearchStrategy[common_pb2.InferTensor]:
    """Tensors of any name, datatype and shape; FP32 ones of a sane shape get the right number of bytes."""
    shapes = st.lists(st.integers(min_value=-2, max_value=70), max_size=4)

    def with_bytes(fields: tuple[str, str, list[int], int, bytes]) -> common_pb2.InferTensor:
        name, datatype, shape, mode, noise = fields
        if mode == 0 and shape and all(d > 0 for d in shape) and math.prod(shape) <= 4096:
            # The right number of bytes for FP32, so that validation passes and the models see
            # them: NaN, huge or random values.
            values = np.frombuffer((noise + b"\0" * (-len(noise) % 4)) or b"\0" * 4, np.float32)
            raw = np.resize(values, math.prod(shape)).tobytes()
        else:
            raw = noise
        return common_pb2.InferTensor(name=name, datatype=datatype, shape=shape, raw_contents=raw)

    deep_or_huge = st.sampled_from(
        [[1] * 17, [1] * 4_097, [2**62, 2**62], [-(2**63)], [2**31, 2**31, 2**31], [0]]
    )
    return st.tuples(
        st.sampled_from(["IMAGE", "TEXT", "TASK", "", "PRIOR", "image"]) | st.text(max_size=20),
        st.sampled_from(DATATYPES),
        st.one_of(shapes, st.just([1, 64]), deep_or_huge),
        st.integers(min_value=0, max_value=2),
        st.binary(max_size=300),
    ).map(with_bytes)


def images() -> st.SearchStrategy[common_pb2.InferTensor]:
    """A digit image's tensor ([1, 64] FP32) with any pixels: NaN, infinite, huge or plain noise."""
    pixels = st.floats(width=32, allow_nan=True, allow_infinity=True)
    raw = st.binary(min_size=256, max_size=256) | st.lists(pixels, min_size=64, max_size=64).map(
        lambda values: np.array(values, np.float32).tobytes()
    )
    return raw.map(
        lambda data: common_pb2.InferTensor(name="IMAGE", datatype="FP32", shape=[1, 64], raw_contents=data)
    )


def texts(name: str = "TEXT") -> st.SearchStrategy[common_pb2.InferTensor]:
    """A BYTES tensor of a few strings: words, empty, control characters or very long."""
    item = st.one_of(st.text(max_size=80), st.sampled_from(["", "turn on the lights", "\x00" * 10, LONGEST_TEXT]))
    return st.lists(item, min_size=1, max_size=MOST_TEXTS).map(lambda items: bytes_tensor(name, items))


def heaviest_near_valid() -> dict[str, list[Message]]:
    """The near-valid requests that make the text models hold the most memory: the longest text in
    batches of every size, with more longest texts or with short ones (onnxruntime keeps what each
    batch made it take; the fuzzing found batches of one long and some short texts take more)."""
    counts = range(1, MOST_TEXTS + 1)
    batches = [bytes_tensor("TEXT", [LONGEST_TEXT] * count) for count in counts]
    batches += [bytes_tensor("TEXT", [LONGEST_TEXT] + ["turn on the lights"] * (count - 1)) for count in counts[1:]]
    return {
        "Infer": [router_service_pb2.InferRequest(task="intents", inputs=[batch], skip_cache=True) for batch in batches],
        "Embed": [orchestrator_service_pb2.EmbedRequest(model_name="text_embedding", input=batch) for batch in batches],
    }


def arc_tasks() -> st.SearchStrategy[common_pb2.InferTensor]:
    """An ARC task's TASK tensor: JSON that is a task, nearly one (odd cells, sizes), or not JSON at all."""
    cell = mostly(st.integers(0, 9), st.sampled_from([-1, 10, 2**40, "a", None, 1.5]))
    grid = st.lists(st.lists(cell, min_size=1, max_size=5), min_size=1, max_size=5)
    pair = st.fixed_dictionaries({"input": grid, "output": grid})
    test = st.fixed_dictionaries({"input": grid})
    task = st.fixed_dictionaries({"train": st.lists(pair, max_size=3), "test": st.lists(test, max_size=2)})
    text = st.one_of(task.map(json.dumps), st.text(max_size=60), st.just("[" * 5_000))
    return text.map(lambda value: bytes_tensor("TASK", [value]))


def infer_requests() -> st.SearchStrategy[router_service_pb2.InferRequest]:
    """Infer requests with every field odd, a few inputs of any kind."""
    tier_thresholds = st.builds(
        common_pb2.TierThresholds, tier=st.integers(-1, 4), accept_threshold=ODD_FLOATS, escalate_threshold=ODD_FLOATS
    )
    return st.builds(
        router_service_pb2.InferRequest,
        request_id=st.text(max_size=140),
        task=st.sampled_from(["digits", "intents", "", "nope"]) | st.text(max_size=200),
        inputs=st.lists(tensors(), max_size=3),
        strategy=st.integers(min_value=-1, max_value=6),
        model_name=st.sampled_from(["", "digits_linear", "digits_ensemble", "missing"]),
        confidence_threshold=ODD_FLOATS,
        escalate_threshold=ODD_FLOATS,
        cost_ceiling=ODD_FLOATS,
        aggregation=st.integers(min_value=-1, max_value=5),
        tier_thresholds=st.lists(tier_thresholds, max_size=3),
        embedding=st.lists(ODD_FLOATS, max_size=40) | st.lists(st.just(0.0), max_size=8),
        skip_cache=st.just(True),
    )


def near_valid_infer_requests() -> st.SearchStrategy[router_service_pb2.InferRequest]:
    """Requests that pass the router's checks or nearly do, so that the orchestrator and the models see odd values."""
    digits = st.builds(
        lambda image, strategy, model, threshold, embedding, request_id: router_service_pb2.InferRequest(
            request_id=request_id,
            task="digits",
            inputs=[image],
            strategy=strategy,
            model_name=model if strategy == common_pb2.STRATEGY_SINGLE else "",
            confidence_threshold=threshold,
            embedding=embedding,
            skip_cache=True,
        ),
        images(),
        st.sampled_from([0, 1, 2, 3, 4]),
        st.sampled_from(["digits_linear", "digits_mlp", "digits_ensemble", "missing"]),
        st.sampled_from([0.0, 0.5, 0.9, 1.0]),
        st.just([]) | st.lists(ODD_FLOATS, min_size=1, max_size=16),
        st.sampled_from(["", *REQUEST_IDS]),
    )
    other_tasks = st.one_of(
        st.builds(router_service_pb2.InferRequest, task=st.just("intents"), inputs=texts().map(lambda t: [t]), skip_cache=st.booleans()),
        st.builds(
            router_service_pb2.InferRequest,
            task=st.just("arc"),
            inputs=arc_tasks().map(lambda t: [t]),
            strategy=st.sampled_from([0, 1, 3, 5]),
            skip_cache=st.just(True),
        ),
    )
    return st.one_of(infer_requests(), digits, digits, other_tasks)


def plans() -> st.SearchStrategy[common_pb2.Plan]:
    """Plans that the orchestrator could run, most fields sane and a few odd."""
    thresholds = mostly(st.sampled_from([0.0, 0.5, 0.9, 1.0]), ODD_FLOATS)
    model = st.builds(common_pb2.ModelRef, name=st.sampled_from(MODEL_NAMES), version=mostly(st.just(0), st.integers(-1, 3)))
    step = st.builds(
        common_pb2.PlanStep,
        model=model,
        tier=mostly(st.integers(1, 3), st.integers(-1, 9)),
        accept_threshold=thresholds,
        escalate_threshold=mostly(st.just(0.0), ODD_FLOATS),
        cost=mostly(st.sampled_from([0.0, 1.0, 22.0]), ODD_FLOATS),
        weight=mostly(st.sampled_from([0.0, 1.0, 2.5]), ODD_FLOATS),
    )
    return st.builds(
        common_pb2.Plan,
        strategy=mostly(st.integers(1, 6), st.integers(-1, 9)),
        task=st.sampled_from(TASKS),
        steps=st.one_of(
            st.lists(step, min_size=1, max_size=4),
            st.tuples(step, st.sampled_from([33, 1_000])).map(lambda pair: repeated_past_bound(*pair)),
        ),
        cost_ceiling=mostly(st.sampled_from([0.0, 1.0, 100.0]), ODD_FLOATS),
        aggregation=mostly(st.integers(0, 4), st.integers(-1, 9)),
        complexity=mostly(st.sampled_from([0.0, 0.5]), ODD_FLOATS),
        max_calls=mostly(st.sampled_from([0, 2, 4]), st.integers(-1, 100)),
        complexity_model=st.sampled_from(["", "digits_complexity", "missing", "digits_linear"]),
        skip_complexity=mostly(st.just(0.0), ODD_FLOATS),
    )


def near_valid_execute_requests() -> st.SearchStrategy[orchestrator_service_pb2.ExecuteRequest]:
    """A plan and inputs for it, as the router would send them, with odd values among them."""
    inputs = st.one_of(
        images().map(lambda t: [t]), texts().map(lambda t: [t]), arc_tasks().map(lambda t: [t]), st.lists(tensors(), max_size=3)
    )
    return st.builds(
        orchestrator_service_pb2.ExecuteRequest,
        request_id=st.sampled_from(["", *REQUEST_IDS]) | st.text(max_size=300),
        plan=plans(),
        inputs=inputs,
        skip_cache=st.booleans(),
    )


def near_valid_embed_requests() -> st.SearchStrategy[orchestrator_service_pb2.EmbedRequest]:
    """Embeddings asked of the embedding model (or another), of odd texts or of any tensor."""
    return st.builds(
        orchestrator_service_pb2.EmbedRequest,
        model_name=mostly(st.just("text_embedding"), st.sampled_from(MODEL_NAMES)),
        input=mostly(texts(), tensors() | images()),
    )


def absent_names() -> st.SearchStrategy[str]:
    """Names an admin call with the admin token may carry: empty, or odd text that no model or task has."""
    return st.one_of(st.just(""), ODD_TEXT.map(lambda name: ABSENT_PREFIX + name))


def cache_entries() -> st.SearchStrategy[cache_service_pb2.CacheEntry]:
    """What a store keeps: small values, as the services store them, and odd producers and costs."""
    model = st.builds(
        common_pb2.ModelRef, name=mostly(st.sampled_from(MODEL_NAMES[:3]), ODD_TEXT), version=mostly(st.integers(0, 2), any_int64())
    )
    return st.builds(
        cache_service_pb2.CacheEntry,
        value=st.binary(max_size=2_048),
        produced_by=st.lists(model, max_size=3),
        compute_cost=mostly(st.sampled_from([0.0, 1.0, 22.0]), ODD_FLOATS),
    )


def levels() -> st.SearchStrategy[int]:
    """Cache levels, known or not."""
    return mostly(st.integers(0, 4), st.integers(-1, 2**31 - 1))


def keys() -> st.SearchStrategy[str]:
    """Cache keys and namespaces: plain text, or odd (empty, control characters, past the bound)."""
    return mostly(st.text(min_size=1, max_size=64), ODD_TEXT)


def ttls() -> st.SearchStrategy[int]:
    """Entry lifetimes in seconds: none (0), plain, or any int64."""
    return mostly(st.sampled_from([0, 1, 3_600]), any_int64())


def embeddings() -> st.SearchStrategy[list[float]]:
    """Embeddings of the right size (384) or any: random unit-scale values, or one value (zero, NaN,
    infinite, huge) repeated."""
    sizes = mostly(st.just(384), st.sampled_from([0, 1, 4_096, 4_097, 100_000]))
    random_values = st.tuples(sizes, st.integers(0, 2**32 - 1)).map(
        lambda spec: np.random.default_rng(spec[1]).standard_normal(spec[0]).astype(np.float32).tolist()
    )
    repeated = st.tuples(sizes, st.sampled_from([0.0, math.nan, math.inf, 1e38])).map(lambda spec: [spec[1]] * spec[0])
    return mostly(random_values, repeated)


def events() -> st.SearchStrategy[monitor_service_pb2.Event]:
    """Events as the services send them, with odd values: NaN confidences, unknown levels, long ids."""
    small = functools.partial(mostly, st.integers(0, 6))
    fraction = mostly(st.floats(0, 1), ODD_FLOATS)
    milliseconds = mostly(st.floats(0, 1e4), ODD_FLOATS)
    cost = mostly(st.floats(0, 100), ODD_FLOATS)
    label = st.sampled_from(["", "0", "7", "9"]) | st.text(max_size=20)
    answer = st.builds(common_pb2.Answer, label=label, confidence=fraction)
    model_name = mostly(st.sampled_from(MODEL_NAMES[:3]), ODD_TEXT)
    model = st.builds(common_pb2.ModelRef, name=model_name, version=mostly(st.integers(1, 2), st.integers(-1, 5)))
    step = st.builds(
        common_pb2.EscalationStep,
        index=small(st.integers(-1, 2**31 - 1)),
        model=model,
        tier=small(st.integers(-1, 9)),
        answer=answer,
        threshold=fraction,
        decision=small(st.integers(-1, 99)),
        latency_ms=milliseconds,
        cost=cost,
        cache_level=small(st.integers(-1, 99)),
    )
    request = st.builds(
        monitor_service_pb2.RequestEvent,
        task=st.sampled_from(TASKS) | ODD_TEXT,
        strategy=small(st.integers(-1, 99)),
        cache_level=small(st.integers(-1, 99)),
        latency_ms=milliseconds,
        total_cost=cost,
        status_code=small(st.integers(-1, 99)),
        answer=answer,
    )
    cache = st.builds(
        monitor_service_pb2.CacheEvent,
        level=small(st.integers(-1, 99)),
        hit=st.booleans(),
        audited=st.booleans(),
        false_hit=st.booleans(),
    )
    level_stats = st.builds(
        cache_service_pb2.LevelStats,
        level=small(st.integers(-1, 99)),
        hits=any_int64(),
        entries=st.integers(-1, 10**6),
        bytes=any_int64(),
        compute_saved=ODD_FLOATS,
    )
    cache_stats = st.builds(
        monitor_service_pb2.CacheStatsEvent,
        replica=st.sampled_from(["cache-0", "cache-1"]) | ODD_TEXT,
        levels=st.lists(level_stats, max_size=5),
    )
    task = st.sampled_from(TASKS)
    header = {
        "service": st.sampled_from(["router", "orchestrator", "cache", ""]),
        "request_id": mostly(st.sampled_from(REQUEST_IDS), ODD_TEXT),
        "unix_time_ms": mostly(st.just(1_700_000_000_000), any_int64()),
    }
    return st.one_of(
        st.builds(monitor_service_pb2.Event, request=request, **header),
        st.builds(monitor_service_pb2.Event, step=st.builds(monitor_service_pb2.StepEvent, task=task, step=step), **header),
        st.builds(monitor_service_pb2.Event, cache=cache, **header),
        st.builds(monitor_service_pb2.Event, cache_stats=cache_stats, **header),
    )


def event_batches(message: type[Message]) -> st.SearchStrategy[Message]:
    """A batch of events (RecordEvents or one message of StreamEvents): a few, or one repeated past the bound."""
    batch = st.one_of(
        st.lists(events(), max_size=12),
        st.tuples(events(), st.sampled_from([10_001, 50_000])).map(lambda pair: repeated_past_bound(*pair)),
    )
    return st.builds(message, events=batch, dropped_since_last_batch=mostly(st.integers(0, 5), any_int64()))


def near_valid_requests() -> dict[str, st.SearchStrategy[Message]]:
    """Each RPC's near-valid requests, by method name; an RPC missing here is fuzzed with any message of its type."""
    target = mostly(st.sampled_from([0.0, 0.9, 0.95]), ODD_FLOATS)
    task = mostly(st.sampled_from(TASKS), ODD_TEXT)
    threshold = mostly(st.sampled_from([0.0, 0.85, 1.0]), ODD_FLOATS)
    return {
        "Infer": near_valid_infer_requests(),
        "Execute": near_valid_execute_requests(),
        "Embed": near_valid_embed_requests(),
        "ListModels": st.builds(orchestrator_service_pb2.ListModelsRequest, task=task),
        "LoadModel": st.builds(orchestrator_service_pb2.LoadModelRequest, model_name=absent_names()),
        "UnloadModel": st.builds(orchestrator_service_pb2.UnloadModelRequest, model_name=absent_names()),
        "Lookup": st.builds(cache_service_pb2.LookupRequest, level=levels(), key=keys()),
        "Store": st.builds(cache_service_pb2.StoreRequest, level=levels(), key=keys(), entry=cache_entries(), ttl_seconds=ttls()),
        "Invalidate": st.builds(
            cache_service_pb2.InvalidateRequest,
            model_name=st.sampled_from(MODEL_NAMES) | ODD_TEXT,
            model_version=mostly(st.integers(0, 3), any_int64()),
        ),
        "SemanticLookup": st.builds(
            cache_service_pb2.SemanticLookupRequest, namespace=keys(), embedding=embeddings(), similarity_threshold=threshold
        ),
        "SemanticStore": st.builds(
            cache_service_pb2.SemanticStoreRequest, namespace=keys(), embedding=embeddings(), entry=cache_entries(), ttl_seconds=ttls()
        ),
        "RecordEvents": event_batches(monitor_service_pb2.RecordEventsRequest),
        "StreamEvents": event_batches(monitor_service_pb2.StreamEventsRequest),
        "RecordFeedback": st.builds(
            monitor_service_pb2.RecordFeedbackRequest,
            request_id=mostly(st.sampled_from(REQUEST_IDS), ODD_TEXT),
            label=mostly(st.sampled_from(["0", "7", "9"]), ODD_TEXT),
        ),
        "GetRoutingPolicy": st.builds(monitor_service_pb2.GetRoutingPolicyRequest, target_accuracy=target, task=task),
        "ProposeRoutingPolicy": st.builds(
            monitor_service_pb2.ProposeRoutingPolicyRequest,
            task=absent_names(),
            target_accuracy=target,
            min_shadow_requests=mostly(st.integers(0, 300), any_int64()),
        ),
        "GetPublishedRoutingPolicy": st.builds(monitor_service_pb2.GetPublishedRoutingPolicyRequest, task=task),
    }


def without_served_names(method: str, message: Message) -> Message:
    """The message with every name an admin call would act on made one that no model or task has."""
    name_field = ADMIN_NAME_FIELDS.get(method)
    if name_field is not None:
        name = getattr(message, name_field)
        if name and not name.startswith(ABSENT_PREFIX):
            setattr(message, name_field, ABSENT_PREFIX + name)
    return message


# ---------------------------------------------------------------------------------------------
# Mangled bytes: a valid message broken on the wire.


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _invalid_utf8(message: Message, body: bytes, at: int) -> bytes:
    """The body with one of its string fields (the last value wins) set to bytes that are no UTF-8."""
    strings = [f.number for f in message.DESCRIPTOR.fields if f.type == FieldDescriptor.TYPE_STRING] or [1]
    return body + _tag(strings[at % len(strings)], 2) + b"\x03\xff\xfe\xfd"


# Ways to break a valid message's bytes; each takes the message, its bytes and a drawn number.
MANGLINGS: dict[str, Callable[[Message, bytes, int], bytes]] = {
    "truncated": lambda message, body, at: body[: at % len(body)] if body else b"\x0a",
    "invalid UTF-8": _invalid_utf8,
    # Parsers keep unknown fields: the message is valid, with more in it than its type declares.
    "unknown fields": lambda message, body, at: body + _tag(1000 + at % 500, 0) + _varint(at) + _tag(1999, 2) + b"\x02ok",
    # Groups nest past the parser's recursion limit (100).
    "nested groups": lambda message, body, at: body + _tag(1999, 3) * (100 + at % 200) + _tag(1999, 4) * (100 + at % 200),
    "length past the end": lambda message, body, at: body + _tag(1 + at % 4, 2) + _varint(2**31) + b"short",
    "wrong wire type": lambda message, body, at: body + _tag(1 + at % 4, 5) + b"\x00\x00\x80\x7f",
}


# ---------------------------------------------------------------------------------------------
# One call: what is sent, with which credentials.


@dataclass(frozen=True)
class FuzzCall:
    """One generated call: the RPC, its request bodies (several for a stream) and its credentials."""

    rpc: Rpc
    kind: str
    credentials: str
    bodies: tuple[bytes, ...]
    # The message of each body (None for garbage) and how it was mangled ("" when it was not).
    made_from: tuple[tuple[Message | None, str], ...]

    def summary(self) -> str:
        """The request in a line, for the report."""
        return " | ".join(summarised(message, body, how) for body, (message, how) in zip(self.bodies, self.made_from, strict=True))


def shortened(message: Message) -> Message:
    """A copy of ``message`` with each repeated field cut to its first SHOWN_ELEMENTS and each string
    to SHOWN_CHARS, for a summary that costs little however long the fields."""
    short = type(message)()
    for descriptor_field, value in message.ListFields():
        if descriptor_field.is_repeated:
            kept = [shortened(v) if isinstance(v, Message) else v for v in value[:SHOWN_ELEMENTS]]
            getattr(short, descriptor_field.name).extend(kept)
        elif isinstance(value, Message):
            getattr(short, descriptor_field.name).CopyFrom(shortened(value))
        else:
            setattr(short, descriptor_field.name, value[:SHOWN_CHARS] if isinstance(value, str | bytes) else value)
    return short


def cause_of(details: str) -> str:
    """What a fault's status message says its cause is, without the values: the exception's class
    for gRPC's UNKNOWN ("Unexpected <class 'ValueError'>: ..."), else its first words."""
    unexpected = re.match(r"Unexpected <class '([\w.]+)'>", details)
    return unexpected.group(1) if unexpected else " ".join(details.split()[:3])


def summarised(message: Message | None, body: bytes, how: str) -> str:
    """A request in one short line: its fields (long ones cut), how it was mangled, its size."""
    if message is None:
        return f"{how}: {body[:48].hex()}{'...' if len(body) > 48 else ''} ({len(body)} bytes)"
    text = text_format.MessageToString(shortened(message), as_one_line=True, print_unknown_fields=False)
    return (f"{how}: " if how else "") + text[:400] + f" ({len(body)} bytes)"


def draw_call(data: st.DataObject, rpc: Rpc, kind: str, credentials: str, near_valid: dict[str, st.SearchStrategy[Message]]) -> FuzzCall:
    """Draws the bodies of a call to ``rpc`` of ``kind`` (see KIND_SHARES)."""
    messages = near_valid[rpc.method] if kind == "near-valid" else any_message(rpc.request.DESCRIPTOR)
    bodies: list[bytes] = []
    made_from: list[tuple[Message | None, str]] = []
    for _ in range(data.draw(st.integers(1, 3)) if rpc.streaming else 1):
        if kind == "garbage":
            bodies.append(data.draw(st.binary(min_size=1, max_size=512)))
            made_from.append((None, "garbage"))
            continue
        message = without_served_names(rpc.method, data.draw(messages))
        body = message.SerializeToString()
        how = ""
        if kind == "mangled":
            how = data.draw(st.sampled_from(sorted(MANGLINGS)))
            body = MANGLINGS[how](message, body, data.draw(st.integers(0, 2**16)))
        bodies.append(body)
        made_from.append((message, how))
    return FuzzCall(rpc, kind, credentials, tuple(bodies), tuple(made_from))


# ---------------------------------------------------------------------------------------------
# The suite under fuzz, and what it is checked for.


def fuzz_suite(work_dir: pathlib.Path) -> Suite:
    """A suite (not yet started) on a private copy of the model repository, in ``work_dir``: its own
    Triton in explicit model control (so that LoadModel and UnloadModel reach Triton), free ports, no
    tracing, small cache levels."""
    repository = work_dir / "model_repository"
    shutil.copytree(REPO_ROOT / "model_repository", repository, ignore=shutil.ignore_patterns("__pycache__"))
    ports = SuitePorts.free()
    log_dir = work_dir / "logs"
    return Suite(
        model_repository=repository,
        ports=ports,
        log_dir=log_dir,
        env={"OTEL_TRACES_EXPORTER": "none", "INFERSCALE_CACHE_MAX_BYTES_PER_LEVEL": str(CACHE_BYTES_PER_LEVEL), **ALLOCATOR_ENV},
        triton_settings=TritonSettings(
            model_repository=repository,
            grpc_port=ports.triton_grpc,
            http_port=ports.triton_http,
            metrics_port=ports.triton_metrics,
            model_control_mode="explicit",
            otlp_traces_url=None,
            log_path=log_dir / "tritonserver.log",
        ),
    )


def suite_processes(suite: Suite) -> dict[str, list[psutil.Process]]:
    """Each service's process, and Triton's server with its backend stubs (its children)."""
    assert suite.triton is not None and suite.triton.pid is not None
    triton = psutil.Process(suite.triton.pid)
    found = {name: [psutil.Process(process.pid)] for name, process in suite.processes.items()}
    found["triton"] = [triton, *sorted(triton.children(recursive=True), key=lambda child: child.pid)]
    return found


def resident_bytes(processes: list[psutil.Process]) -> int:
    """The resident memory of the processes together."""
    return sum(process.memory_info().rss for process in processes)


@dataclass
class FuzzReport:
    """What a fuzz run sent, what came back and how the suite fared."""

    requests: int
    seed: int
    # Calls made: ``requests`` unless hypothesis ran out of new ones for an RPC.
    sent: int = 0
    statuses: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    by_kind: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    # (RPC, status, cause) -> the first few requests that got it, when the status is a fault or unexplained.
    faults: dict[tuple[str, str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    # Refusals without a message.
    unexplained: int = 0
    pids_before: dict[str, list[int]] = field(default_factory=dict)
    pids_after: dict[str, list[int]] = field(default_factory=dict)
    alive_after: dict[str, bool] = field(default_factory=dict)
    # What each process held after the warm-up, and after each later round.
    memory_before: dict[str, int] = field(default_factory=dict)
    memory_rounds: list[dict[str, int]] = field(default_factory=list)
    good_answer_before: str = ""
    good_answer_after: str = ""
    good_label: str = ""
    seconds: float = 0.0

    def count(self, code: str) -> int:
        """Calls of every RPC that got the status ``code``."""
        return sum(counter[code] for counter in self.statuses.values())

    @property
    def server_faults(self) -> int:
        """UNKNOWN and INTERNAL statuses, and OK answers that did not parse: the server's fault every time."""
        return sum(self.count(code.name) for code in SERVER_FAULTS) + self.count("UNPARSABLE")

    @property
    def unclear_codes(self) -> set[str]:
        """The statuses other than UNKNOWN and INTERNAL that are not among CLEAR_STATUSES."""
        clear = {code.name for code in CLEAR_STATUSES | SERVER_FAULTS} | {"UNPARSABLE"}
        return {code for counter in self.statuses.values() for code in counter if code not in clear}

    @property
    def unclear(self) -> int:
        """Calls that got one of unclear_codes."""
        return sum(self.count(code) for code in self.unclear_codes)

    @property
    def memory_after(self) -> dict[str, int]:
        """What each process held at the end."""
        return self.memory_rounds[-1]

    def memory_ratio(self, name: str) -> float:
        """Resident memory at the end over resident memory after the warm-up."""
        return self.memory_after[name] / self.memory_before[name]

    def failures(self) -> list[str]:
        """Every check that failed, in words; empty when the suite came through."""
        failed = []
        if self.sent < self.requests:
            failed.append(f"only {self.sent} of the {self.requests} requests were made: hypothesis found no more new ones")
        if self.server_faults:
            failed.append(f"{self.server_faults} calls got UNKNOWN, INTERNAL or an unparsable answer")
        if self.unexplained:
            failed.append(f"{self.unexplained} refusals came without a message")
        for name, pids in self.pids_before.items():
            if not self.alive_after.get(name) or self.pids_after.get(name) != pids:
                failed.append(f"{name} did not come through as the same processes: {pids} before, {self.pids_after.get(name)} after")
        for name in self.memory_before:
            if self.memory_ratio(name) > MEMORY_GROWTH_LIMIT:
                failed.append(
                    f"{name} grew from {self.memory_before[name] / 2**20:.1f} to {self.memory_after[name] / 2**20:.1f} MiB "
                    f"(x{self.memory_ratio(name):.3f}, more than x{MEMORY_GROWTH_LIMIT})"
                )
        if not self.good_label or self.good_answer_after != self.good_label:
            failed.append(f"the holdout digit labelled {self.good_label} was answered {self.good_answer_after!r} after the fuzz")
        return failed

    def table(self) -> str:
        """The report as markdown: statuses per RPC, per kind of request, the faults found and the checks."""
        codes = sorted({code for counter in self.statuses.values() for code in counter})

        def row(label: str, counter: Counter[str]) -> str:
            return f"| {label} | {sum(counter.values()):,} | " + " | ".join(f"{counter[c]:,}" if counter[c] else "" for c in codes) + " |"

        header = ["| sent | " + " | ".join(codes) + " |", "| ---: | " + " | ".join("---:" for _ in codes) + " |"]
        lines = [
            f"# Fuzz run: {self.sent:,} requests of {self.requests:,} asked (seed {self.seed}, {self.seconds:.0f} s)",
            "",
            "Statuses per RPC (UNPARSABLE: an OK answer that is not the RPC's response type).",
            "",
            "| RPC " + header[0],
            "| --- " + header[1],
            *(row(rpc, counter) for rpc, counter in self.statuses.items()),
            row("all", sum(self.statuses.values(), Counter[str]())),
            "",
            "Statuses per kind of request and credentials.",
            "",
            "| kind " + header[0],
            "| --- " + header[1],
            *(row(kind, counter) for kind, counter in sorted(self.by_kind.items())),
        ]
        if self.faults:
            lines += ["", "Statuses other than the clear ones, and refusals without a message (the first requests that got each):", ""]
            for (rpc, code, cause), examples in sorted(self.faults.items()):
                lines.append(f"- {rpc} -> {code} ({cause}):")
                lines += [f"  - `{example}`" for example in examples]
        lines += ["", "| check | result |", "| --- | --- |"]
        lines.append(f"| UNKNOWN + INTERNAL + UNPARSABLE (must be 0) | {self.server_faults} |")
        lines.append(f"| refusals without a message (must be 0) | {self.unexplained} |")
        lines.append(f"| other statuses that are not clear ({', '.join(sorted(self.unclear_codes)) or 'none'}) | {self.unclear} |")
        for name, pids in self.pids_before.items():
            same = self.alive_after.get(name) and self.pids_after.get(name) == pids
            verdict = "yes" if same else f"NO: {self.pids_after.get(name)}"
            lines.append(f"| {name}: same processes, alive (pids {', '.join(map(str, pids))}) | {verdict} |")
        for name in self.memory_before:
            rounds = " -> ".join(f"{reading[name] / 2**20:.1f}" for reading in self.memory_rounds)
            lines.append(
                f"| {name}: resident memory (MiB) after the warm-up -> after each round | {self.memory_before[name] / 2**20:.1f} -> "
                f"{rounds} (x{self.memory_ratio(name):.3f}, limit x{MEMORY_GROWTH_LIMIT}) |"
            )
        lines.append(
            f"| a holdout digit (label {self.good_label}) through Infer: before -> after | "
            f"{self.good_answer_before!r} -> {self.good_answer_after!r} |"
        )
        failed = self.failures()
        lines += ["", "All checks passed." if not failed else "FAILED: " + "; ".join(failed)]
        return "\n".join(lines)


def good_request(index: int) -> tuple[router_service_pb2.InferRequest, str]:
    """A holdout digit as a client sends it, and its label."""
    _, _, images_, labels = load_split()
    image = from_numpy("IMAGE", images_[index : index + 1].astype(np.float32))
    request = router_service_pb2.InferRequest(task="digits", inputs=[image], skip_cache=True)
    return request, str(labels[index])


class Fuzzer:
    """Sends calls to a running suite, each with its credentials, and counts what comes back."""

    def __init__(self, suite: Suite, report: FuzzReport) -> None:
        self._suite = suite
        self.report = report
        # Channels that present no token themselves: each call carries its own metadata.
        self._channels = {service: open_blocking_channel(suite.address(service), suite.tls) for service in SERVICES}

    def close(self) -> None:
        """Closes the channels."""
        for channel in self._channels.values():
            channel.close()

    def _metadata(self, call: FuzzCall) -> list[tuple[str, str]]:
        if call.credentials == "none":
            return []
        if call.credentials == "wrong":
            wrong = [
                bearer_metadata("not-the-token-" + "x" * (len(call.bodies[0]) % 40)),
                [("authorization", "Basic dXNlcjpwYXNzd29yZA==")],
                [("authorization", "Bearer ")],
                [("authorization", "bearer " + self._suite.credentials.service_token)],
            ]
            return wrong[len(call.bodies[0]) % len(wrong)]
        roles = RIGHT_ROLES if call.credentials == "right" else OTHER_ROLES
        return self._suite.metadata(roles[call.rpc.access])

    def send(self, call: FuzzCall) -> None:
        """Makes the call and counts its status; a fault or an unexplained refusal keeps the request."""
        channel = self._channels[call.rpc.service]
        metadata = self._metadata(call)
        code, details = grpc.StatusCode.OK, ""
        try:
            if call.rpc.streaming:
                stream = channel.stream_stream(call.rpc.path)
                replies = list(stream(iter(call.bodies), metadata=metadata, timeout=CALL_TIMEOUT_SECONDS))
            else:
                unary = channel.unary_unary(call.rpc.path)
                replies = [unary(call.bodies[0], metadata=metadata, timeout=CALL_TIMEOUT_SECONDS)]
            for reply in replies:
                call.rpc.response.FromString(reply)
        except grpc.RpcError as error:
            code, details = error.code(), error.details() or ""
        except DecodeError as error:
            self._count(call, "UNPARSABLE", str(error))
            return
        name = code.name
        if code not in CLEAR_STATUSES:
            self._count(call, name, details)
        elif code != grpc.StatusCode.OK and not details:
            self._count(call, name, "without a message", unexplained=True)
        else:
            self._count(call, name)

    def _count(self, call: FuzzCall, code: str, fault: str | None = None, *, unexplained: bool = False) -> None:
        """Counts a call's status; for a fault, keeps the call, up to EXAMPLES_KEPT of each cause."""
        rpc = f"{call.rpc.service}.{call.rpc.method}"
        self.report.statuses[rpc][code] += 1
        self.report.by_kind[f"{call.kind}, {call.credentials} credentials"][code] += 1
        self.report.unexplained += int(unexplained)
        if fault is not None:
            examples = self.report.faults[(rpc, code, cause_of(fault))]
            if len(examples) < EXAMPLES_KEPT:
                examples.append(f"{call.summary()} -> {fault[:200]}")

    def infer(self, request: router_service_pb2.InferRequest) -> router_service_pb2.InferResponse:
        """A well-formed Infer with the client's token."""
        reply = self._channels["router"].unary_unary(INFER_PATH)(
            request.SerializeToString(), metadata=self._suite.metadata("client"), timeout=CALL_TIMEOUT_SECONDS
        )
        return router_service_pb2.InferResponse.FromString(reply)


def kinds_of(rpc: Rpc, near_valid: dict[str, st.SearchStrategy[Message]]) -> dict[str, int]:
    """The kinds of request ``rpc`` is fuzzed with, and their shares."""
    if not rpc.request.DESCRIPTOR.fields:
        return {"mangled": 1, "garbage": 1}
    shares = dict(KIND_SHARES)
    if rpc.method not in near_valid:
        shares["any message"] += shares.pop("near-valid")
    return shares


def call_counts(rpcs: tuple[Rpc, ...], near_valid: dict[str, st.SearchStrategy[Message]], requests: int) -> dict[tuple[Rpc, str], int]:
    """How many calls of each kind each RPC gets, ``requests`` in all: Infer INFER_SHARE times an
    other RPC's share, each RPC's split by kind, rounded so that the counts add up exactly."""
    weights = {}
    for rpc in rpcs:
        kinds = kinds_of(rpc, near_valid)
        for kind, share in kinds.items():
            weights[(rpc, kind)] = (INFER_SHARE if rpc.method == "Infer" else 1) * share / sum(kinds.values())
    total = sum(weights.values())
    exact = {key: requests * weight / total for key, weight in weights.items()}
    counts = {key: int(value) for key, value in exact.items()}
    for key in sorted(exact, key=lambda k: counts[k] - exact[k])[: requests - sum(counts.values())]:
        counts[key] += 1
    return counts


class Campaign:
    """Runs the generated calls of each (RPC, kind) through hypothesis, one run after another, and
    keeps count; each run is seeded from the campaign's seed, so that a seed repeats a campaign."""

    def __init__(self, fuzzer: Fuzzer, seed: int, progress: Callable[[str], None], after_each: Callable[[], None]) -> None:
        self._fuzzer = fuzzer
        self._seed = seed
        self._progress = progress
        self._after_each = after_each
        self.near_valid = near_valid_requests()
        self.sent = 0
        self.started = time.monotonic()

    def run(self, rpc: Rpc, kind: str, count: int, phase: str) -> None:
        """Sends ``count`` calls of ``kind`` to ``rpc``; a run that stops short (hypothesis found no
        new request) is followed by another with the next seed, until none is new."""
        done = 0
        for attempt in itertools.count():
            before = done

            @settings(
                max_examples=count - done,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.generate],
            )
            @hypothesis_seed(zlib.crc32(f"{self._seed}/{phase}/{rpc.path}/{kind}/{attempt}".encode()))
            @given(st.data())
            def send_one(data: st.DataObject) -> None:
                nonlocal done
                if done < count:
                    credentials = CREDENTIALS[self.sent % len(CREDENTIALS)]
                    self.send(draw_call(data, rpc, kind, credentials, self.near_valid))
                    done += 1

            send_one()
            if done >= count or done == before:
                return

    def send(self, call: FuzzCall) -> None:
        """Makes one call and counts it."""
        self._fuzzer.send(call)
        self._after_each()
        self.sent += 1
        if self.sent % PROGRESS_EVERY == 0:
            report = self._fuzzer.report
            self._progress(
                f"{self.sent:>7,} sent in {time.monotonic() - self.started:5.0f} s; UNKNOWN+INTERNAL so far: {report.server_faults}; "
                + ", ".join(f"{code} {report.count(code):,}" for code in ("OK", "INVALID_ARGUMENT", "UNAUTHENTICATED", "PERMISSION_DENIED"))
            )


class MemoryFloor:
    """The resident memory of each of the suite's process groups, as the least of its latest
    FLOOR_READINGS readings (one after each call): what a process keeps, without the transient
    memory of the request in flight or of the work it left in the background."""

    def __init__(self, processes: dict[str, list[psutil.Process]]) -> None:
        self._processes = processes
        self._latest: deque[dict[str, int]] = deque(maxlen=FLOOR_READINGS)

    def read(self) -> None:
        """Takes a reading."""
        self._latest.append({name: resident_bytes(group) for name, group in self._processes.items()})

    def floor(self) -> dict[str, int]:
        """Each group's least resident memory over the latest readings."""
        return {name: min(reading[name] for reading in self._latest) for name in self._processes}


def fuzz(suite: Suite, requests: int, seed: int, *, progress: Callable[[str], None] = print, good_digit: int = 0) -> FuzzReport:
    """Sends ``requests`` generated calls (hypothesis, seeded by ``seed``) to a started suite's RPCs and
    returns the report; its ``failures()`` are the checks that failed.

    The calls go in ROUNDS rounds, each with its share of every (RPC, kind). The warm-up is each
    RPC's largest request, LARGEST_REPEATS times, and the first round; resident memory (see
    MemoryFloor) is taken at its end and at the end of each later round, so that a leak shows as
    growth round after round."""
    report = FuzzReport(requests=requests, seed=seed)
    fuzzer = Fuzzer(suite, report)
    processes = suite_processes(suite)
    memory = MemoryFloor(processes)
    campaign = Campaign(fuzzer, seed, progress, memory.read)
    counts = call_counts(public_rpcs(), campaign.near_valid, requests)
    good, report.good_label = good_request(good_digit)
    report.good_answer_before = fuzzer.infer(good).answer.label
    report.pids_before = {name: [p.pid for p in group] for name, group in processes.items()}
    try:
        heaviest = heaviest_near_valid()
        for rpc in public_rpcs():
            for largest in [without_served_names(rpc.method, largest_message(rpc.request.DESCRIPTOR)), *heaviest.get(rpc.method, [])]:
                messages = 2 if rpc.streaming else 1
                call = FuzzCall(rpc, "largest", "right", (largest.SerializeToString(),) * messages, ((largest, ""),) * messages)
                for _ in range(LARGEST_REPEATS):
                    campaign.send(call)
        for round_ in range(ROUNDS):
            for (rpc, kind), count in counts.items():
                campaign.run(rpc, kind, count // ROUNDS + (round_ < count % ROUNDS), f"round {round_}")
            if round_ == 0:
                report.memory_before = memory.floor()
            else:
                report.memory_rounds.append(memory.floor())
        report.seconds = time.monotonic() - campaign.started
        after = suite_processes(suite)
        report.pids_after = {name: [p.pid for p in group] for name, group in after.items()}
        report.alive_after = {
            name: all(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in group) for name, group in after.items()
        }
        try:
            report.good_answer_after = fuzzer.infer(good).answer.label
        except grpc.RpcError as error:
            report.good_answer_after = f"{error.code().name}: {error.details()}"
    finally:
        fuzzer.close()
    report.sent = campaign.sent
    return report


def main() -> int:
    """Runs the fuzzing against a private suite, prints and writes the table; 1 when a check failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS, help="calls over every RPC (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="the same seed sends the same requests (default %(default)s)")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="inferscale-fuzz-") as scratch:
        with fuzz_suite(pathlib.Path(scratch)) as suite:
            print(f"suite up; sending {args.requests:,} requests over {len(public_rpcs())} RPCs (seed {args.seed})", flush=True)
            report = fuzz(suite, args.requests, args.seed, progress=lambda line: print(line, flush=True))
    table = report.table()
    print("\n" + table)
    (RESULTS / "fuzz.md").write_text(table + "\n")
    print(f"\nwrote {RESULTS / 'fuzz.md'}")
    return 1 if report.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
