"""Where a request's embedding for the semantic cache (L1) comes from, and the namespace it is looked up in.

Pure logic, no gRPC.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inferscale.errors import InvalidArgument
from inferscale.tensors import bytes_tensor, to_numpy
from inferscale.v1 import common_pb2, router_service_pb2

MAX_EMBEDDING_DIMENSIONS = 4096
# The input of a text embedding model (inferscale.role "embedding", as model_repository/text_embedding
# declares it): BYTES [N], one UTF-8 text per item.
EMBEDDED_TEXT_INPUT = "TEXT"


@dataclass(frozen=True)
class EmbeddingSource:
    """How to get the request's embedding: ``vector`` as it is, or ``tensor`` run through ``embedding_model``."""

    vector: np.ndarray | None = None
    embedding_model: str = ""
    tensor: common_pb2.InferTensor | None = None
    # The cosine similarity the task's models ask of a neighbour; 0 leaves it to the cache.
    threshold: float = 0.0
    # The caller sent ``vector`` itself (InferRequest.embedding): nothing ties it to the inputs
    # the answer is computed from, so it may only key what that same caller is served.
    from_caller: bool = False


def validate_embedding(embedding: Sequence[float], field: str = "embedding") -> None:
    """Raises InvalidArgument, naming ``field``, for an embedding cosine similarity cannot use."""
    if len(embedding) > MAX_EMBEDDING_DIMENSIONS:
        raise InvalidArgument(f"{field} has {len(embedding)} values, more than {MAX_EMBEDDING_DIMENSIONS}")
    if not all(math.isfinite(v) for v in embedding):
        raise InvalidArgument(f"{field} holds NaN or infinite values")
    if embedding and not any(embedding):
        raise InvalidArgument(f"{field} is all zeros; cosine similarity is undefined for it")


def embedding_source(
    request: router_service_pb2.InferRequest, models: Sequence[common_pb2.ModelInfo]
) -> EmbeddingSource | None:
    """Returns where the request's embedding comes from, or None when its task has no semantic cache.

    The caller's own embedding wins; otherwise the input the task's models declare, embedded by
    their embedding model or, without one, read as its FP32 values. A text task's models read the
    prompt with its turns rendered around it; the prompt alone is embedded, as the user's question.
    """
    declaring = next((m for m in models if m.semantic_input), None)
    threshold = declaring.semantic_threshold if declaring is not None else 0.0
    if request.embedding:
        return EmbeddingSource(vector=np.asarray(request.embedding, dtype=np.float32), threshold=threshold, from_caller=True)
    if declaring is None:
        return None
    if request.HasField("text"):
        if not declaring.embedding_model:
            return None  # a prompt has no FP32 values to compare
        prompt = bytes_tensor(EMBEDDED_TEXT_INPUT, [request.text.prompt])
        return EmbeddingSource(embedding_model=declaring.embedding_model, tensor=prompt, threshold=threshold)
    tensor = next((t for t in request.inputs if t.name == declaring.semantic_input), None)
    if tensor is None:
        return None
    if declaring.embedding_model:
        return EmbeddingSource(embedding_model=declaring.embedding_model, tensor=tensor, threshold=threshold)
    if tensor.datatype != "FP32":
        raise InvalidArgument(
            f"input {tensor.name!r} keys the semantic cache of task {request.task!r} as an FP32 embedding, "
            f"but is {tensor.datatype}"
        )
    vector = to_numpy(tensor).reshape(-1)
    if not vector.any() or not np.all(np.isfinite(vector)):
        return None  # the models may accept it; the semantic cache cannot compare it
    return EmbeddingSource(vector=vector, threshold=threshold)


# The numbers of a prompt, as written: they key a text task's semantic namespace.
NUMBERS = re.compile(r"\d+(?:[.,]\d+)*")


def semantic_namespace(
    plan: common_pb2.Plan, dimensions: int, caller: str = "", text: common_pb2.TextPrompt | None = None
) -> str:
    """The L1 namespace of a plan and an embedding length: the task, a digest of the plan and the length.

    A neighbour is only served for the same task and plan (strategy, models, versions,
    thresholds), never across model versions, and only compared with embeddings of its length.
    Embeddings a caller sent itself live in that caller's own namespace (``caller``): one that
    pairs "turn on the lights" with the embedding of "turn off the lights" misleads only itself.
    For a text task only the prompt is embedded: its turns and sampling limits (``text``) go into
    the digest, so a neighbour is a similar question asked under the same instructions and limits.
    So do the numbers the prompt holds, in order: an embedding barely tells "48 cookies" from "36
    cookies" (cosine 0.993 for two GSM8K questions that differ in one number), and an answer to
    one is wrong for the other.
    """
    digest = hashlib.sha256(plan.SerializeToString(deterministic=True))
    if text is not None:
        setting = common_pb2.TextPrompt(context=text.context, sampling=text.sampling)
        digest.update(b"|text setting|" + setting.SerializeToString(deterministic=True))
        digest.update(b"|numbers|" + "|".join(NUMBERS.findall(text.prompt)).encode())
    namespace = f"{plan.task}|{digest.hexdigest()[:32]}|{dimensions}"
    if caller:
        namespace += "|caller:" + hashlib.sha256(caller.encode()).hexdigest()[:16]
    return namespace
