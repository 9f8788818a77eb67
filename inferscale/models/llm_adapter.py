"""The Triton python-backend adapter of the llama.cpp text models: the vLLM backend's contract.

Imported by each ``model_repository/llm_*/1/model.py``; it only runs inside Triton's python
backend stub, where ``triton_python_backend_utils`` exists. The model is decoupled: each request
gets its responses through its own response sender, one per generated token when ``stream`` is
true, else one with the whole text; the last carries the final flag, the finish reason and the
totals. A request whose client went away (a cancelled gRPC stream, an expired deadline) stops
generating at the next token, and is counted in the ``inferscale_llm_generations_total`` metric
with finish reason "cancelled".
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from inferscale.models.llm import (
    MODEL_FAULT_PREFIX,
    SWITCHES,
    Generation,
    LlamaGenerator,
    SamplingParameters,
    TokenStep,
    default_cache_dir,
    run_generation,
    weights_file,
)

# A prompt longer than this many bytes is refused before it is tokenized; the context bounds it
# in tokens after.
MAX_PROMPT_BYTES = 256 * 1024


class Refused(ValueError):
    """The request is malformed; its message goes back to the caller."""


def _flag(request, name: str, default: bool) -> bool:  # type: ignore[no-untyped-def]
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return default
    values = tensor.as_numpy().reshape(-1)
    if values.size != 1:
        raise Refused(f"{name} must hold one BOOL, not {values.size}")
    return bool(values[0])


def _string(request, name: str, *, required: bool) -> str:  # type: ignore[no-untyped-def]
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        if required:
            raise Refused(f"{name} is required")
        return ""
    values = tensor.as_numpy().reshape(-1)
    if values.size != 1:
        raise Refused(f"{name} must hold one string, not {values.size}")
    value = values[0]
    raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
    if len(raw) > MAX_PROMPT_BYTES:
        raise Refused(f"{name} holds {len(raw)} bytes, more than {MAX_PROMPT_BYTES}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Refused(f"{name} is not UTF-8: {error}") from None


def _logprobs_json(steps: list[TokenStep]) -> bytes:
    """vLLM's per-token layout: for each position, {token id: {logprob, rank, decoded_token}}, the
    sampled token first, then the most likely ones."""
    positions = []
    for step in steps:
        entry = {str(step.token_id): {"logprob": step.logprob, "rank": step.rank, "decoded_token": step.text}}
        for rank, (token, logprob, text) in enumerate(step.top):
            entry.setdefault(str(token), {"logprob": logprob, "rank": rank + 1, "decoded_token": text})
        positions.append(entry)
    return json.dumps(positions).encode("utf-8")


class TritonPythonModel:
    """One model instance: one GGUF model in llama.cpp, one generation at a time."""

    def initialize(self, args: dict[str, str]) -> None:
        """Loads the weights the config names (``llm.weights``, ``llm.sha256``), checked against their hash."""
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        parts = [part.strip() for part in parameters["llm.weights"].split(",") if part.strip()]
        path = weights_file(parts, parameters["llm.sha256"], default_cache_dir())
        self.generator = LlamaGenerator(
            path,
            context_tokens=int(parameters.get("llm.context_tokens", "4096")),
            threads=int(parameters.get("llm.threads", "2")),
        )
        self.model_name = args["model_name"]
        # The families are kept: python backend metrics die with their family.
        self.metric_families = [generations := pb_utils.MetricFamily(
            name="inferscale_llm_generations_total",
            description="Generations ended, by finish reason (stop, length, cancelled, error)",
            kind=pb_utils.MetricFamily.COUNTER,
        )]
        self.generations = {
            reason: generations.Metric(labels={"model": self.model_name, "finish_reason": reason})
            for reason in ("stop", "length", "cancelled", "error")
        }
        tokens = pb_utils.MetricFamily(
            name="inferscale_llm_tokens_total",
            description="Tokens read (input) and generated (output)",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.metric_families.append(tokens)
        self.tokens = {
            direction: tokens.Metric(labels={"model": self.model_name, "direction": direction})
            for direction in ("input", "output")
        }

    def execute(self, requests: list) -> None:
        """Generates for each request in turn, answering through its response sender."""
        for request in requests:
            sender = request.get_response_sender()
            try:
                self._generate(request, sender)
            except ValueError as error:  # Refused and the engine's own checks: the request is at fault
                self._fail(sender, str(error))
            except Exception as error:  # noqa: BLE001 - every request must end, whatever broke
                self._fail(sender, f"{MODEL_FAULT_PREFIX}{type(error).__name__}: {error}")

    def _fail(self, sender, message: str) -> None:  # type: ignore[no-untyped-def]
        self.generations["error"].increment(1)
        sender.send(
            pb_utils.InferenceResponse(error=pb_utils.TritonError(message)), flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        )

    def _generate(self, request, sender) -> None:  # type: ignore[no-untyped-def]
        prompt = _string(request, "text_input", required=True)
        stream = _flag(request, "stream", False)
        exclude_input = _flag(request, "exclude_input_in_output", stream)
        if stream and not exclude_input:
            raise Refused("when streaming, exclude_input_in_output = false is not allowed")
        wanted = {name: _flag(request, name, False) for name in SWITCHES}
        params = SamplingParameters.from_json(_string(request, "sampling_parameters", required=False))
        text = "" if exclude_input else prompt
        sent_tokens = 0
        generation: Generation | None = None
        for generation, new in run_generation(self.generator, prompt, params, sender.is_cancelled):
            if generation.finish_reason is None:
                if stream and new:
                    self._send(sender, generation, new, "".join(s.text for s in new), wanted, final=False)
                    sent_tokens += len(new)
                continue
        assert generation is not None
        reason = generation.finish_reason or "stop"
        self.generations[reason].increment(1)
        self.tokens["input"].increment(generation.input_tokens)
        self.tokens["output"].increment(len(generation.tokens))
        if reason == "cancelled":
            # Nobody is listening, but the python backend releases a request's response factory
            # only on the final flag, which it needs even after a cancellation (its README).
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            return
        unsent = generation.tokens[sent_tokens:]
        final_text = "".join(s.text for s in unsent)
        self._send(sender, generation, unsent, final_text if stream else text + final_text, wanted, final=True)

    def _send(self, sender, generation: Generation, new: list[TokenStep], text: str, wanted: dict[str, bool], *, final: bool) -> None:  # type: ignore[no-untyped-def]
        outputs = [pb_utils.Tensor("text_output", np.array([text.encode("utf-8")], dtype=np.object_))]
        if wanted["return_finish_reason"]:
            reason = str(generation.finish_reason) if final else "None"
            outputs.append(pb_utils.Tensor("finish_reason", np.array([reason.encode()], dtype=np.object_)))
        if wanted["return_cumulative_logprob"]:
            outputs.append(pb_utils.Tensor("cumulative_logprob", np.array([generation.cumulative_logprob], dtype=np.float32)))
        if wanted["return_logprobs"]:
            outputs.append(pb_utils.Tensor("logprobs", np.array([_logprobs_json(new)], dtype=np.object_)))
        if wanted["return_num_input_tokens"]:
            outputs.append(pb_utils.Tensor("num_input_tokens", np.array([generation.input_tokens], dtype=np.uint32)))
        if wanted["return_num_output_tokens"]:
            outputs.append(pb_utils.Tensor("num_output_tokens", np.array([len(new)], dtype=np.uint32)))
        sender.send(pb_utils.InferenceResponse(output_tensors=outputs), flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if final else 0)

    def finalize(self) -> None:
        """Releases the model."""
        self.generator = None  # type: ignore[assignment]
