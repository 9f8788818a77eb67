"""Text generation on CPU with llama.cpp, behind the request contract of Triton's vLLM backend.

This module knows nothing of Triton: :mod:`inferscale.models.llm_adapter` moves tensors between
Triton and it. What it keeps of vLLM's semantics, so that a client cannot tell the two apart:

- ``sampling_parameters`` is vLLM's JSON (``max_tokens`` 16 and ``temperature`` 1.0 by default,
  ``top_k`` -1 for all tokens); a key this engine does not implement is refused by name rather
  than ignored.
- A token's log-probability is the model's own (log-softmax of the raw logits), before
  temperature and truncation reshape the distribution: vLLM's ``raw_logprobs``.
- ``logprobs`` N asks for the N most likely tokens at each position besides the sampled one.

The weights come from registry packages pinned by version and checked here against their
SHA-256 before llama.cpp reads them; nothing is downloaded.
"""

from __future__ import annotations

import codecs
import hashlib
import importlib.util
import json
import math
import os
import pathlib
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

# The vLLM backend's switches that ask for its additional outputs, one BOOL input each.
SWITCHES = (
    "return_finish_reason",
    "return_cumulative_logprob",
    "return_logprobs",
    "return_num_input_tokens",
    "return_num_output_tokens",
)
# The sampling parameters this engine implements, with vLLM's defaults.
DEFAULT_MAX_TOKENS = 16
DEFAULT_TEMPERATURE = 1.0
# More alternatives per position than this is refused: each costs a partial sort of the vocabulary.
MAX_TOP_LOGPROBS = 20
MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 256
# The prompt is read this many tokens at a time, a cancellation checked between chunks.
PREFILL_CHUNK_TOKENS = 256
# How a model's error message begins when the model failed itself, as opposed to a request it
# refuses (Triton's stream carries an error as a message alone, without a status code).
MODEL_FAULT_PREFIX = "model fault: "


@dataclass(frozen=True)
class SamplingParameters:
    """One request's sampling parameters, read from vLLM's ``sampling_parameters`` JSON."""

    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = 1.0
    # 0 keeps every token (vLLM's -1).
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # None: no per-token log-probabilities; N >= 0: the sampled token's, and the N most likely.
    logprobs: int | None = None

    @classmethod
    def from_json(cls, text: str) -> SamplingParameters:
        """Parses and checks the JSON; ValueError names the key at fault."""
        try:
            raw = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as error:
            raise ValueError(f"sampling_parameters is not JSON: {error}") from None
        if not isinstance(raw, dict):
            raise ValueError("sampling_parameters must be a JSON object")  # noqa: TRY004 - a malformed request, refused as one
        unknown = sorted(set(raw) - _READERS.keys())
        if unknown:
            raise ValueError(f"sampling_parameters: {', '.join(unknown)} not supported by this engine")
        values = {}
        for key, value in raw.items():
            if value is None:
                continue
            try:
                values[key] = _READERS[key](value)
            except (TypeError, ValueError) as error:
                raise ValueError(f"sampling_parameters.{key}: {error}") from None
        return cls(**values)


def _integer(low: int, high: int) -> Callable[[object], int]:
    def read(value: object) -> int:
        # JSON numbers arrive as int or float; a bool is an int to Python but never meant as one.
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise ValueError(f"{value!r} is not an integer")
        if not low <= int(value) <= high:
            raise ValueError(f"{int(value)} is outside [{low}, {high}]")
        return int(value)

    return read


def _number(low: float, high: float) -> Callable[[object], float]:
    def read(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number")
        if not low <= value <= high:
            raise ValueError(f"{value} is outside [{low}, {high}]")
        return float(value)

    return read


def _stop(value: object) -> tuple[str, ...]:
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise ValueError("must be a non-empty string or a list of them")
    if len(stops) > MAX_STOP_STRINGS or any(len(s) > MAX_STOP_CHARS for s in stops):
        raise ValueError(f"at most {MAX_STOP_STRINGS} strings of at most {MAX_STOP_CHARS} characters")
    return tuple(stops)


def _top_k(value: object) -> int:
    k = _integer(-1, 1 << 20)(value)
    return 0 if k == -1 else k


_READERS: dict[str, Callable[[object], object]] = {
    "max_tokens": _integer(1, 1 << 20),
    "temperature": _number(0.0, 100.0),
    "top_p": _number(0.0, 1.0),
    "top_k": _top_k,
    "min_p": _number(0.0, 1.0),
    "seed": _integer(0, 2**32 - 1),
    "stop": _stop,
    "logprobs": _integer(0, MAX_TOP_LOGPROBS),
}


@dataclass
class TokenStep:
    """One generated token: its id, the text it completes and its log-probability."""

    token_id: int
    # The text this token completes; "" while a multi-byte character is still incomplete.
    text: str
    logprob: float
    # 1 for the most likely token at its position.
    rank: int = 1
    # The most likely tokens at this position, (id, log-probability, text), when asked for.
    top: list[tuple[int, float, str]] = field(default_factory=list)


@dataclass
class Generation:
    """What a whole generation produced, filled in as it runs."""

    input_tokens: int
    tokens: list[TokenStep] = field(default_factory=list)
    # "stop" (end of sequence or a stop string), "length" (max_tokens), "cancelled", or None while it runs.
    finish_reason: str | None = None

    @property
    def cumulative_logprob(self) -> float:
        """The sum of the generated tokens' log-probabilities."""
        return float(sum(step.logprob for step in self.tokens))


def verified_file(path: pathlib.Path, sha256: str) -> pathlib.Path:
    """Returns ``path`` once its SHA-256 is the pinned one; ValueError otherwise."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 22):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise ValueError(f"{path} has SHA-256 {digest.hexdigest()}, expected {sha256}: not the pinned file")
    return path


def package_file(relative: str) -> pathlib.Path:
    """The file ``package/inner/path`` of an installed package, found without importing the package."""
    package, _, inner = relative.partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package} is not installed (make setup installs it from requirements-models.txt)")
    return pathlib.Path(next(iter(spec.submodule_search_locations))) / inner


def weights_file(parts: Sequence[str], sha256: str, cache_dir: pathlib.Path) -> pathlib.Path:
    """The GGUF file the packaged ``parts`` make when joined in order, checked against ``sha256``.

    One part is used where it lies. Several (a file split across packages to fit a registry's size
    limit) are joined once into ``cache_dir``, written under a temporary name and renamed when
    whole, so that a crash or a second process never leaves or reads half a file.
    """
    files = [package_file(part) for part in parts]
    if len(files) == 1:
        return verified_file(files[0], sha256)
    joined = cache_dir / f"{sha256}.gguf"
    if joined.exists():
        # Named by its hash and moved into place only once that hash was checked: hashing half a
        # gigabyte again on every load of every Triton would be spent for nothing.
        return joined
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=cache_dir, suffix=".part", delete=False) as out:
        try:
            for file in files:
                with file.open("rb") as part:
                    while chunk := part.read(1 << 22):
                        out.write(chunk)
            out.close()
            verified_file(pathlib.Path(out.name), sha256)
            os.replace(out.name, joined)
        except BaseException:
            pathlib.Path(out.name).unlink(missing_ok=True)
            raise
    return joined


def default_cache_dir() -> pathlib.Path:
    """Where joined weights are kept: ``INFERSCALE_MODEL_CACHE``, else ``~/.cache/inferscale/gguf``."""
    configured = os.environ.get("INFERSCALE_MODEL_CACHE", "").strip()
    return pathlib.Path(configured) if configured else pathlib.Path.home() / ".cache" / "inferscale" / "gguf"


class LlamaGenerator:
    """One GGUF model loaded in llama.cpp, generating one request at a time."""

    def __init__(self, model_path: pathlib.Path, *, context_tokens: int, threads: int) -> None:
        from llama_cpp import Llama  # imported here: the module's pure parts need no llama.cpp

        self._llama = Llama(
            model_path=str(model_path), n_ctx=context_tokens, n_threads=threads, n_threads_batch=threads, verbose=False
        )
        self.context_tokens = context_tokens

    def tokenize(self, prompt: str) -> list[int]:
        """The prompt's tokens; the chat format's special markers (``<|im_start|>``) are parsed as such."""
        return self._llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)

    def generate(self, prompt_tokens: list[int], params: SamplingParameters, cancelled: Callable[[], bool]) -> Iterator[TokenStep]:
        """Yields each generated token; sets nothing itself: see :func:`run_generation`.

        Ends at the end-of-generation token, after ``max_tokens``, or when ``cancelled()`` turns true.
        """
        from llama_cpp import LogitsProcessorList, llama_vocab_is_eog

        llama = self._llama
        log_probabilities: list[np.ndarray] = []

        def remember(_: np.ndarray, scores: np.ndarray) -> np.ndarray:
            # The raw distribution, before temperature and truncation, as vLLM reports it.
            shifted = scores - scores.max()
            log_probabilities[:] = [shifted - np.log(np.exp(shifted).sum())]
            return scores

        if not self._prefill(prompt_tokens, cancelled):
            return
        llama.set_seed(params.seed if params.seed is not None else int.from_bytes(os.urandom(4), "little"))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        previous: list[int] = list(prompt_tokens)
        for count, token in enumerate(
            llama.generate(
                prompt_tokens,
                temp=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k,
                min_p=params.min_p,
                repeat_penalty=1.0,
                logits_processor=LogitsProcessorList([remember]),
            )
        ):
            if llama_vocab_is_eog(llama._model.vocab, token) or cancelled():
                return
            distribution = log_probabilities[0]
            piece = llama.detokenize([token], prev_tokens=previous)
            previous.append(token)
            top = []
            if params.logprobs:
                best = np.argpartition(-distribution, params.logprobs)[: params.logprobs]
                best = best[np.argsort(-distribution[best])]
                top = [(int(t), float(distribution[t]), self._text(int(t))) for t in best]
            rank = int((distribution > distribution[token]).sum()) + 1
            yield TokenStep(int(token), decoder.decode(piece), float(distribution[token]), rank, top)
            if count + 1 >= params.max_tokens:
                return

    def _prefill(self, prompt_tokens: list[int], cancelled: Callable[[], bool]) -> bool:
        """Reads the prompt, all but its last token, in chunks, checking ``cancelled`` between them;
        False when cancelled.

        llama.cpp reads a whole prompt before the first token, a minute for a long one on a busy
        CPU, and a cancelled request would wait for it. What the previous generation already read
        (the same few-shot examples) is kept, as ``Llama.generate`` would keep it; the last token is
        left for ``generate`` to read, so that its logits are fresh.
        """
        llama = self._llama
        kept = 0
        for cached, wanted in zip(llama.input_ids[: llama.n_tokens], prompt_tokens[:-1], strict=False):
            if cached != wanted:
                break
            kept += 1
        llama.n_tokens = kept
        for start in range(kept, len(prompt_tokens) - 1, PREFILL_CHUNK_TOKENS):
            if cancelled():
                return False
            llama.eval(prompt_tokens[start : min(start + PREFILL_CHUNK_TOKENS, len(prompt_tokens) - 1)])
        return not cancelled()

    def _text(self, token: int) -> str:
        return self._llama.detokenize([token]).decode("utf-8", errors="replace")


def run_generation(
    generator: LlamaGenerator,
    prompt: str,
    params: SamplingParameters,
    cancelled: Callable[[], bool],
) -> Iterator[tuple[Generation, list[TokenStep]]]:
    """Runs one generation and yields the generation so far and its tokens as they become final.

    The last item comes with ``finish_reason`` set and no new tokens. A stop string ends the text
    before it, as vLLM does; a token whose text could begin a stop string is held back until the
    next tokens show whether it does, so that nothing streamed is ever taken back. ValueError:
    the prompt and ``max_tokens`` do not fit the context.
    """
    prompt_tokens = generator.tokenize(prompt)
    if len(prompt_tokens) + params.max_tokens > generator.context_tokens:
        raise ValueError(
            f"the prompt's {len(prompt_tokens)} tokens and max_tokens {params.max_tokens} exceed "
            f"the model's context of {generator.context_tokens} tokens"
        )
    generation = Generation(input_tokens=len(prompt_tokens))
    text = ""
    # Tokens generated but not yet passed on, and where the first of them starts in ``text``.
    held: list[TokenStep] = []
    held_from = 0
    reason = "length"
    longest_stop = max((len(stop) for stop in params.stop), default=0)
    for step in generator.generate(prompt_tokens, params, cancelled):
        generation.tokens.append(step)
        held.append(step)
        text += step.text
        # Only the end of the text can hold a stop string this token completed: searching the whole
        # text at every token would grow with the square of its length.
        since = max(0, len(text) - len(step.text) - longest_stop + 1)
        stop_at = min((i for i in (text.find(s, since) for s in params.stop) if i >= 0), default=-1)
        if stop_at >= 0:
            # The stop string and what follows it are not part of the answer.
            _cut(held, stop_at - held_from)
            yield generation, held
            reason = "stop"
            break
        releasable = len(text) - _stop_prefix_length(text, params.stop)
        released = []
        while held and held_from + len(held[0].text) <= releasable:
            held_from += len(held[0].text)
            released.append(held.pop(0))
        if released:
            yield generation, released
    else:
        if held:
            yield generation, held
        if cancelled():
            reason = "cancelled"
        elif len(generation.tokens) < params.max_tokens:
            reason = "stop"
    generation.finish_reason = reason
    yield generation, []


def _stop_prefix_length(text: str, stops: Sequence[str]) -> int:
    """The length of the longest end of ``text`` that is the beginning of a stop string (shorter
    than it): what may still turn out to be a stop string."""
    longest = 0
    for stop in stops:
        for length in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:length]):
                longest = length
                break
    return longest


def _cut(tokens: list[TokenStep], end: int) -> None:
    """Cuts the tokens' joined text at ``end`` characters: the token across it loses its tail,
    those after it their text (they were generated, and count as generated)."""
    position = 0
    for token in tokens:
        keep = max(0, min(len(token.text), end - position))
        position += len(token.text)
        token.text = token.text[:keep]
