"""Per-request cost of the digits models as Triton measures it, next to their holdout accuracy.

    python -m benchmarks.model_costs [--triton-url HOST:PORT] [--grpc-port 28001 --http-port 28000
                                      --metrics-port 28002] [--requests 719]

Sends the holdout images one per request ([1, 64], the cascade's unit of work) to each model
and reads Triton's statistics before and after: the mean of ``inference_stats.compute_infer``
over those requests is the model's cost, free of network and client time. Without
``--triton-url`` it starts the embedded Triton on the given ports and stops it afterwards.
Prints a table of tier, configured cost, holdout accuracy (of the served answers), compute
mean in microseconds, and its ratio to the cheapest tier: the ratio, rounded, is what
``inferscale.cost`` in each ``config.pbtxt`` should say.
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import sys
from collections.abc import Iterator

import numpy as np
import tritonclient.grpc as triton_grpc

from inferscale.models.digits import MODEL_CLASSES, load_split
from inferscale.triton.launcher import EmbeddedTriton, TritonSettings

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def compute_infer(client: triton_grpc.InferenceServerClient, model: str) -> tuple[int, int]:
    """Returns Triton's cumulative (compute_infer nanoseconds, count) for a model."""
    stats = client.get_inference_statistics(model).model_stats[0].inference_stats.compute_infer
    return stats.ns, stats.count


def infer(client: triton_grpc.InferenceServerClient, model: str, image: np.ndarray) -> np.ndarray:
    """Sends one image as a [1, 64] request and returns its [1, 10] probabilities."""
    tensor = triton_grpc.InferInput("IMAGE", [1, 64], "FP32")
    tensor.set_data_from_numpy(image[None, :].astype(np.float32))
    return client.infer(model, [tensor]).as_numpy("PROBS")


def measure(
    client: triton_grpc.InferenceServerClient,
    model: str,
    images: np.ndarray,
    labels: np.ndarray,
    warmup: int,
) -> dict:
    """Runs one model over the images; returns its row of the table."""
    parameters = client.get_model_config(model).config.parameters
    for image in images[:warmup]:
        infer(client, model, image)
    ns_before, count_before = compute_infer(client, model)
    correct = sum(
        int(infer(client, model, image)[0].argmax() == label)
        for image, label in zip(images, labels)
    )
    ns_after, count_after = compute_infer(client, model)
    return {
        "model": model,
        "tier": int(parameters["inferscale.tier"].string_value),
        "cost": parameters["inferscale.cost"].string_value,
        "accuracy": correct / len(labels),
        "mean_us": (ns_after - ns_before) / max(count_after - count_before, 1) / 1e3,
    }


@contextlib.contextmanager
def triton(args: argparse.Namespace) -> Iterator[str]:
    """Yields the gRPC URL of the Triton to measure, starting an embedded one if none was given."""
    if args.triton_url:
        yield args.triton_url
        return
    settings = TritonSettings(
        model_repository=args.model_repository.resolve(),
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        # Loaded once: a repository poll reloading a model mid-run would spoil the statistics.
        model_control_mode="explicit",
        # Tracing is the suite's choice, not part of a model's cost.
        otlp_traces_url=None,
    )
    with EmbeddedTriton(settings) as server:
        yield server.grpc_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--triton-url", help="gRPC host:port of a running Triton (default: start one)"
    )
    parser.add_argument(
        "--model-repository", type=pathlib.Path, default=REPO_ROOT / "model_repository"
    )
    parser.add_argument("--grpc-port", type=int, default=28001)
    parser.add_argument("--http-port", type=int, default=28000)
    parser.add_argument("--metrics-port", type=int, default=28002)
    parser.add_argument(
        "--requests", type=int, default=719, help="holdout images sent per model (at most 719)"
    )
    parser.add_argument(
        "--warmup", type=int, default=20, help="requests per model before measuring"
    )
    parser.add_argument(
        "--models", nargs="+", default=list(MODEL_CLASSES), help="models to measure"
    )
    args = parser.parse_args(argv)

    split = load_split()
    images, labels = split.x_holdout[: args.requests], split.y_holdout[: args.requests]
    with triton(args) as url:
        client = triton_grpc.InferenceServerClient(url)
        rows = sorted(
            (measure(client, m, images, labels, args.warmup) for m in args.models),
            key=lambda r: r["tier"],
        )
        client.close()

    cheapest = rows[0]["mean_us"]
    print(f"{len(labels)} single-image requests per model; Triton compute_infer mean per request")
    print(f"{'model':<18}{'tier':>5}{'cost':>6}{'holdout acc':>13}{'compute µs':>12}{'ratio':>8}")
    for row in rows:
        ratio = row["mean_us"] / cheapest
        print(
            f"{row['model']:<18}{row['tier']:>5}{row['cost']:>6}{row['accuracy']:>13.4f}"
            f"{row['mean_us']:>12.1f}{ratio:>8.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
