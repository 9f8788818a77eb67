"""Tests of the ``inferscale`` command line, run in-process against the session's real suite."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import socket
import time

import numpy as np
import pytest

from inferscale import cli, cli_support
from inferscale.auth import ADMIN_TOKEN_VARIABLE, CLIENT_TOKEN_VARIABLE, SERVICE_TOKEN_VARIABLE
from inferscale.models.digits import load_split
from inferscale.rpc import wait_until_serving
from inferscale.suite import Suite, SuitePorts, free_port
from inferscale.tensors import from_numpy
from inferscale.v1 import (
    common_pb2,
    monitor_service_pb2,
    orchestrator_service_pb2,
    router_service_pb2,
)

SUBCOMMANDS = ("up", "down", "infer", "models", "stats", "load", "unload", "bench", "workload")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Runs the command line in-process and returns its exit status, stdout and stderr."""
    status = cli.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def digits_models(orchestrator) -> list[str]:
    reply = orchestrator.ListModels(
        orchestrator_service_pb2.ListModelsRequest(task="digits"), timeout=10
    )
    return [info.model.name for info in reply.models]


# --- without a suite -------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def suite_tokens(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that calls the session suite sends its tokens, as a user who sourced its credentials would."""
    if "suite" in request.fixturenames:
        credentials = request.getfixturevalue("suite").credentials
        monkeypatch.setenv(CLIENT_TOKEN_VARIABLE, credentials.client_token)
        monkeypatch.setenv(SERVICE_TOKEN_VARIABLE, credentials.service_token)


def test_help_of_main_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: inferscale")
    for name in SUBCOMMANDS:
        assert re.search(rf"^\s+{name}\s", out, re.MULTILINE), name


@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
def test_help_of_each_subcommand(capsys: pytest.CaptureFixture[str], subcommand: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([subcommand, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: inferscale {subcommand}")


def test_infer_needs_an_input(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["infer"])
    assert exit_info.value.code == 2
    assert "one of the arguments --digit --pixels-file --npy --text --arc-task --prompt is required" in capsys.readouterr().err


def test_default_addresses_follow_the_services_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFERSCALE_ROUTER_ADDRESS", raising=False)
    assert cli_support.default_address("router") == "127.0.0.1:50051"
    monkeypatch.setenv("INFERSCALE_ROUTER_ADDRESS", "10.0.0.7:6000")
    assert cli_support.default_address("router") == "10.0.0.7:6000"


def test_unreachable_router_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(
        capsys, "infer", "--router", f"127.0.0.1:{free_port()}", "--digit", "0", "--timeout", "2"
    )
    assert status == 2
    assert re.match(r"error: (UNAVAILABLE|DEADLINE_EXCEEDED): ", err), err


def test_down_without_a_suite_says_so(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    status, _, err = run(capsys, "down", "--state-file", str(tmp_path / "none.json"))
    assert status == 1
    assert "nothing to stop" in err


def test_busy_ports_are_found() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy_port = listener.getsockname()[1]
        ports = dataclasses.replace(SuitePorts.free(), router=busy_port)
        assert cli._ports_in_use(ports) == [f"router {busy_port}"]


def test_workload_order_is_the_demos() -> None:
    picked = cli.workload_indices(5, 2, 719)
    assert len(picked) == 7 and picked[5:] == picked[:2]
    assert picked[:5] == [int(i) for i in np.random.default_rng(7).permutation(719)[:5]]


# --- against the session's suite -------------------------------------------------------------


@pytest.mark.integration
def test_infer_shows_every_step(capsys: pytest.CaptureFixture[str], suite: Suite) -> None:
    status, out, err = run(
        capsys, "infer", "--router", suite.address("router"), "--digit", "5", "--skip-cache"
    )
    assert status == 0, err
    assert "Escalation steps" in out
    assert re.search(
        r"^Answer \d \(confidence [01]\.\d{3}\), truth \d: (right|wrong)", out, re.MULTILINE
    )
    assert re.search(r"trace [0-9a-f]{32}", out)
    assert "cache none" in out


@pytest.mark.integration
def test_infer_json_matches_the_router(
    capsys: pytest.CaptureFixture[str], suite: Suite, router
) -> None:
    status, out, err = run(
        capsys, "infer", "--router", suite.address("router"), "--digit", "11", "--json"
    )
    assert status == 0, err
    from_cli = json.loads(out)
    _, _, images, _ = load_split()
    direct = router.Infer(
        router_service_pb2.InferRequest(
            task="digits", inputs=[from_numpy("IMAGE", images[11:12].astype(np.float32))]
        ),
        timeout=30,
    )
    assert from_cli["answer"]["label"] == direct.answer.label
    assert [step["model"]["name"] for step in from_cli["steps"]] == [
        step.model.name for step in direct.steps
    ]
    assert re.fullmatch(r"[0-9a-f]{32}", from_cli["traceId"])


@pytest.mark.integration
def test_threshold_one_escalates_through_every_tier(
    capsys: pytest.CaptureFixture[str], suite: Suite, orchestrator
) -> None:
    status, out, err = run(
        capsys,
        "infer",
        "--router",
        suite.address("router"),
        "--digit",
        "3",
        "--threshold",
        "1.0",
        "--skip-cache",
    )
    assert status == 0, err
    models = digits_models(orchestrator)
    assert len(models) == 3
    for name in models:
        assert name in out
    step_rows = [line for line in out.splitlines() if any(f" {name} " in line for name in models)]
    assert len(step_rows) == 3
    assert sum("escalate" in row for row in step_rows) == 2
    assert "accept" in step_rows[-1]


@pytest.mark.integration
def test_infer_from_a_pixels_file_answers_as_the_digit(
    capsys: pytest.CaptureFixture[str], suite: Suite, tmp_path
) -> None:
    _, _, images, _ = load_split()
    text_file = tmp_path / "digit.txt"
    text_file.write_text(
        "\n".join(", ".join(f"{v:g}" for v in row) for row in images[42].reshape(8, 8))
    )
    npy_file = tmp_path / "digit.npy"
    np.save(npy_file, images[42])
    answers = []
    for source in (
        ["--digit", "42"],
        ["--pixels-file", str(text_file)],
        ["--pixels-file", str(npy_file)],
    ):
        status, out, err = run(
            capsys, "infer", "--router", suite.address("router"), "--json", *source
        )
        assert status == 0, err
        answers.append(json.loads(out)["answer"])
    assert answers[0] == answers[1] == answers[2]


@pytest.mark.integration
def test_single_strategy_runs_one_model(capsys: pytest.CaptureFixture[str], suite: Suite) -> None:
    status, out, err = run(
        capsys,
        "infer",
        "--router",
        suite.address("router"),
        "--digit",
        "8",
        "--strategy",
        "single",
        "--model",
        "digits_mlp",
    )
    assert status == 0, err
    assert "digits_mlp" in out and "digits_linear" not in out
    assert "single plan of 1 step" in out


def test_digit_outside_the_holdout_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "infer", "--router", "127.0.0.1:1", "--digit", "100000")
    assert status == 2
    assert out == ""
    assert err.startswith("error: --digit 100000 is outside the holdout set: pick 0..")


def test_pixels_file_of_the_wrong_size_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    path = tmp_path / "short.txt"
    path.write_text(" ".join(["1"] * 63))
    status, _, err = run(capsys, "infer", "--router", "127.0.0.1:1", "--pixels-file", str(path))
    assert status == 2
    assert "holds 63 values" in err and "needs 64" in err


def test_single_strategy_without_a_model_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(
        capsys, "infer", "--router", "127.0.0.1:1", "--digit", "1", "--strategy", "single"
    )
    assert status == 2
    assert "--strategy single needs --model" in err


@pytest.mark.integration
def test_unknown_model_is_not_found(capsys: pytest.CaptureFixture[str], suite: Suite) -> None:
    status, out, err = run(
        capsys,
        "infer",
        "--router",
        suite.address("router"),
        "--digit",
        "1",
        "--strategy",
        "single",
        "--model",
        "no_such_model",
    )
    assert status == 2
    assert out == ""
    assert err.startswith("error: NOT_FOUND: ") and "no_such_model" in err


@pytest.mark.integration
def test_models_lists_the_registry(
    capsys: pytest.CaptureFixture[str], suite: Suite, orchestrator
) -> None:
    status, out, err = run(
        capsys, "models", "--orchestrator", suite.address("orchestrator"), "--task", "digits"
    )
    assert status == 0, err
    models = digits_models(orchestrator)
    assert len(models) == 3
    for tier, name in enumerate(models, start=1):
        assert re.search(rf"{name}\s+│\s+\d+\s+│\s+digits\s+│\s+{tier}\s+│.*│\s+yes\s+│", out), out


@pytest.mark.integration
def test_stats_after_an_infer(capsys: pytest.CaptureFixture[str], suite: Suite, monitor) -> None:
    status, _, err = run(
        capsys, "infer", "--router", suite.address("router"), "--digit", "2", "--skip-cache"
    )
    assert status == 0, err
    # Events reach the monitor in background batches; wait until this request is counted.
    deadline = time.monotonic() + 10
    while monitor.GetStats(monitor_service_pb2.GetStatsRequest(), timeout=5).requests < 1:
        assert time.monotonic() < deadline, "the monitor never counted the request"
        time.sleep(0.1)
    status, out, err = run(
        capsys, "stats", "--monitor", suite.address("monitor"), "--cache", suite.address("cache")
    )
    assert status == 0, err
    requests = re.search(r"^Monitor \S+: (\d+) requests, (\d+) events recorded", out, re.MULTILINE)
    assert requests and int(requests.group(1)) >= 1, out
    for title in (
        "Requests per strategy",
        "Steps per model",
        "Cache lookups (monitor)",
        "Cache levels (cache service)",
    ):
        assert title in out
    assert "digits_linear" in out and "L4 final result" in out


@pytest.mark.integration
def test_workload_prints_a_summary(capsys: pytest.CaptureFixture[str], suite: Suite) -> None:
    status, out, err = run(
        capsys, "workload", "--router", suite.address("router"), "--requests", "6", "--repeats", "2"
    )
    assert status == 0, err
    assert re.search(r"│ requests\s+│ 8 \(6 distinct \+ 2 repeats\)", out), out
    accuracy = re.search(r"│ accuracy\s+│ (\d+)/8 = ", out)
    assert accuracy and int(accuracy.group(1)) >= 6
    hits = re.search(r"│ cache hits \(L4\)\s+│ (\d+)/8", out)
    assert hits and int(hits.group(1)) >= 2  # the repeats
    assert re.search(r"│ tier 1\s+│ accepted \d+, escalated \d+", out)
    assert re.search(r"│ latency p50\s+│ [\d.]+ ms", out) and re.search(
        r"│ latency p99\s+│ [\d.]+ ms", out
    )


@pytest.mark.integration
@pytest.mark.parametrize("command", ["unload", "load"])
def test_admin_calls_without_a_token_are_refused(
    capsys: pytest.CaptureFixture[str],
    suite: Suite,
    orchestrator,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    monkeypatch.delenv(ADMIN_TOKEN_VARIABLE, raising=False)
    monkeypatch.setattr(cli_support, "read_state", lambda path: None)  # no suite of `inferscale up` lends its token
    status, out, err = run(
        capsys, command, "digits_mlp", "--orchestrator", suite.address("orchestrator")
    )
    assert status == 2
    assert out == ""
    # The service token (which this command sends) opens no admin call.
    assert re.match(r"error: PERMISSION_DENIED: ", err), err
    assert "digits_mlp" in digits_models(orchestrator)


def test_admin_token_travels_as_bearer_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ADMIN_TOKEN_VARIABLE, "from-env")
    assert cli._admin_metadata(None) == [("authorization", "Bearer from-env")]
    assert cli._admin_metadata("given") == [("authorization", "Bearer given")]
    monkeypatch.delenv(ADMIN_TOKEN_VARIABLE)
    assert cli._admin_metadata(None) == []


def test_bench_passes_arguments_through(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "bench", "overhead", "--help")
    assert status == 0
    assert "benchmarks/router_overhead.py --help" in out.splitlines()[0]
    assert "--concurrency" in out  # the script's own help, streamed back


# --- a suite of its own ----------------------------------------------------------------------


@pytest.mark.integration
def test_up_detached_then_down(capsys: pytest.CaptureFixture[str], tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    state_file = tmp_path / "suite.json"
    status, out, err = run(
        capsys, "up", "--detach", "--free-ports", "--state-file", str(state_file)
    )
    assert status == 0, err
    state = json.loads(state_file.read_text())
    pid = state["pid"]
    try:
        assert "Suite up in" in out and state["router"] in out
        assert set(state) >= {"pid", "router", "orchestrator", "cache", "monitor", "metrics_url"}
        # The suite's tokens are in the file its state names, for tools to read.
        credentials = dict(line.split("=", 1) for line in pathlib.Path(state["credentials"]).read_text().splitlines())
        assert oct(pathlib.Path(state["credentials"]).stat().st_mode & 0o777) == "0o600"
        monkeypatch.setenv(CLIENT_TOKEN_VARIABLE, credentials[CLIENT_TOKEN_VARIABLE])
        status, out, err = run(
            capsys, "infer", "--router", state["router"], "--digit", "0", "--json"
        )
        assert status == 0, err
        assert json.loads(out)["answer"]["label"]
        # A second suite on the same state file is refused while the first runs.
        status, _, err = run(
            capsys, "up", "--detach", "--free-ports", "--state-file", str(state_file)
        )
        assert status == 1 and "already runs" in err
    finally:
        status, out, err = run(capsys, "down", "--state-file", str(state_file))
    assert status == 0, err
    assert f"Suite (pid {pid}) stopped" in out
    assert not state_file.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(TimeoutError):
        wait_until_serving(state["router"], timeout_seconds=1)


def test_cache_level_labels() -> None:
    assert cli_support.cache_level_label(common_pb2.CACHE_LEVEL_UNSPECIFIED) == "none"
    assert cli_support.cache_level_label(common_pb2.CACHE_LEVEL_L4_FINAL_RESULT) == "L4 final result"


@pytest.mark.integration
def test_infer_passes_strategy_settings_and_shows_an_ensembles_uncertainty(
    capsys: pytest.CaptureFixture[str], suite: Suite
) -> None:
    status, out, err = run(
        capsys, "infer", "--router", suite.address("router"), "--digit", "5", "--skip-cache",
        "--strategy", "ensemble", "--aggregation", "plurality", "--json",
    )
    assert status == 0, err
    response = json.loads(out)
    assert response["plan"]["aggregation"] == "AGGREGATION_PLURALITY"
    assert response["uncertainty"]["membersAnswered"] == 3
    status, out, err = run(
        capsys, "infer", "--router", suite.address("router"), "--digit", "5", "--skip-cache",
        "--tier-threshold", "1=1.0", "--tier-threshold", "2=1.0", "--cost-ceiling", "3", "--json",
    )
    assert status == 0, err
    response = json.loads(out)
    assert [s["acceptThreshold"] for s in response["plan"]["steps"]][:2] == [1.0, 1.0]
    assert response["plan"]["costCeiling"] == 3
    assert response["steps"][-1]["decision"] == "DECISION_STOPPED"
    status, _, err = run(capsys, "infer", "--router", suite.address("router"), "--digit", "5", "--tier-threshold", "one")
    assert status == 2 and "TIER=ACCEPT" in err
