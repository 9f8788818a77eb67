"""The ``inferscale`` command line: brings the suite up and down, sends requests and reads what the services report.

    inferscale up [--free-ports] [--detach]      the suite on the embedded Triton
    inferscale infer --digit 7                   one request, with every escalation step
    inferscale models | stats | workload         the registry, the counts, a workload with a summary
    inferscale load | unload MODEL               admin calls (bearer token)
    inferscale bench models|overhead             the benchmarks
    inferscale down                              stops a detached suite

Addresses default to the variables the services read (``INFERSCALE_ROUTER_ADDRESS`` and so on),
else the default ports on 127.0.0.1. Exit status: 0 success, 1 the suite could not be started or
stopped, 2 a refused request or a bad argument.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from inferscale.models.digits import N_PIXELS, load_split
from inferscale.auth import ADMIN_TOKEN_VARIABLE, CLIENT_TOKEN_VARIABLE, SERVICE_TOKEN_VARIABLE, bearer_metadata
from inferscale.rpc import open_blocking_channel, wait_until_serving
from inferscale.tls import process_tls
from inferscale.settings import env_str
from inferscale.suite import REPO_ROOT, Suite, SuitePorts
from inferscale.tensors import from_numpy
from inferscale.v1 import (
    cache_service_pb2,
    cache_service_pb2_grpc,
    common_pb2,
    monitor_service_pb2,
    monitor_service_pb2_grpc,
    orchestrator_service_pb2,
    orchestrator_service_pb2_grpc,
    router_service_pb2,
    router_service_pb2_grpc,
)

RESULTS = REPO_ROOT / "results"
DEFAULT_STATE_FILE = RESULTS / "suite.json"
BENCHMARKS = {
    "models": REPO_ROOT / "benchmarks" / "model_costs.py",
    "overhead": REPO_ROOT / "benchmarks" / "router_overhead.py",
}
# Exit statuses, as the module docstring lists them.
EXIT_FAILED = 1
EXIT_REFUSED = 2
# The longest `down` waits for a suite to drain and stop before it kills what is left.
DOWN_TIMEOUT_SECONDS = 60.0
# A request's deadline, as the router's own default plan deadline (INFERSCALE_REQUEST_TIMEOUT_SECONDS).
RPC_TIMEOUT_SECONDS = 30.0

# Detached suites started by this process, kept so that `down` in the same process (the tests)
# reaps its own child instead of waiting on a zombie, and Popen never warns it was dropped.
_DETACHED: dict[int, subprocess.Popen[bytes]] = {}


class CliError(Exception):
    """A failure the user can act on; main prints ``error: <message>`` and exits with ``status``."""

    def __init__(self, message: str, status: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------------------------
# Output helpers


def _console(stderr: bool = False) -> Console:
    """A rich console on the current stdout (or stderr); wide enough for the tables when piped."""
    console = Console(stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped or captured output defaults to 80 columns, which folds the step table's reasons.
        console = Console(stderr=stderr, width=160)
    return console


def _table(
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    numeric: Collection[str] = (),
) -> Table:
    """Builds a table; cells are plain text so that brackets in server messages are never markup."""
    table = Table(title=title, title_justify="left", title_style="bold")
    for column in columns:
        table.add_column(
            column,
            justify="right" if column in numeric else "left",
            no_wrap=column not in {"reason", "problem"},
        )
    for row in rows:
        table.add_row(*(cell if isinstance(cell, Text) else Text(str(cell)) for cell in row))
    return table


def _enum_label(name: str, prefix: str) -> str:
    """``DECISION_ACCEPT`` -> ``accept``: the enum names without their proto prefix."""
    return name.removeprefix(prefix).lower()


def _decision(decision: int) -> str:
    return _enum_label(common_pb2.Decision.Name(decision), "DECISION_")


def _strategy(strategy: int) -> str:
    return _enum_label(common_pb2.Strategy.Name(strategy), "STRATEGY_")


def strategy_choices() -> list[str]:
    """The strategies a request may name, read from the contract so that a new one needs no change here."""
    return [_strategy(number) for number in common_pb2.Strategy.values() if number]


def cache_level_label(level: int) -> str:
    """``CACHE_LEVEL_L4_FINAL_RESULT`` -> ``L4 final result``; no level -> ``none``."""
    if level == common_pb2.CACHE_LEVEL_UNSPECIFIED:
        return "none"
    name = common_pb2.CacheLevel.Name(level).removeprefix("CACHE_LEVEL_")
    tier, _, rest = name.partition("_")
    return f"{tier} {rest.lower().replace('_', ' ')}"


# ---------------------------------------------------------------------------------------------
# Addresses and channels


def default_address(service: str) -> str:
    """The address the services themselves would use for ``service``: its variable, else the default port."""
    return env_str(
        f"INFERSCALE_{service.upper()}_ADDRESS", f"127.0.0.1:{getattr(SuitePorts(), service)}"
    )


def _address(value: str | None, service: str) -> str:
    address = value or default_address(service)
    if address == "off":
        raise CliError(f"INFERSCALE_{service.upper()}_ADDRESS is 'off': pass --{service} HOST:PORT")
    return address


def _token(variable: str) -> str:
    """A token from the environment, else from the credentials of the suite `inferscale up` runs
    (named by its default state file), so that `up` and then `infer` work with no setting."""
    token = os.environ.get(variable, "").strip()
    if token:
        return token
    state = _read_state(DEFAULT_STATE_FILE) or {}
    try:
        lines = pathlib.Path(state.get("credentials", "")).read_text().splitlines() if state.get("credentials") else []
    except OSError:
        return ""
    return next((line.split("=", 1)[1] for line in lines if line.startswith(f"{variable}=")), "")


@contextlib.contextmanager
def _stub(address: str, stub_class: Callable[[grpc.Channel], Any]) -> Iterator[Any]:
    # The suite's services need the service token ($INFERSCALE_SERVICE_TOKEN); calls to the router
    # and admin calls carry their own token, which takes its place.
    with open_blocking_channel(address, process_tls(), token=_token(SERVICE_TOKEN_VARIABLE)) as channel:
        yield stub_class(channel)


def _rpc_error(error: grpc.RpcError, address: str) -> CliError:
    """Turns a gRPC failure into ``CODE: details``, with a hint when nothing answers at all."""
    code = error.code()
    message = f"{code.name}: {error.details()}"
    if code == grpc.StatusCode.UNAVAILABLE:
        message += f" (is the suite up at {address}? `inferscale up`, or pass the address)"
    return CliError(message, EXIT_REFUSED)


# ---------------------------------------------------------------------------------------------
# up / down


def _read_state(path: pathlib.Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise CliError(f"cannot read the state file {path}: {error}", EXIT_FAILED) from None


def _write_state(path: pathlib.Path, state: dict[str, Any]) -> None:
    # Written whole and renamed, so that a reader polling for the file never sees half of it.
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(partial, path)


def _is_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as gone; our own detached child is reaped)."""
    process = _DETACHED.get(pid)
    if process is not None:
        return process.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        # The state letter follows the parenthesised command name; Z is a zombie awaiting its parent.
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    return True


def _is_suite_process(pid: int) -> bool:
    """Whether ``pid`` still runs `inferscale.cli up` (and not some process that reused the pid)."""
    if not _is_running(pid):
        return False
    try:
        command = (
            pathlib.Path(f"/proc/{pid}/cmdline")
            .read_bytes()
            .replace(b"\0", b" ")
            .decode(errors="replace")
        )
    except OSError:
        return True  # no /proc to ask: trust the state file
    return "inferscale" in command and " up" in command


def _suite_state(suite: Suite, log_dir: pathlib.Path) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **{
            service: suite.address(service)
            for service in ("router", "orchestrator", "cache", "monitor")
        },
        "triton": suite.triton_url,
        "metrics_url": suite.metrics_url,
        "log_dir": str(log_dir),
        # The suite's tokens (a file only its owner reads), for the commands that call it.
        "credentials": str(log_dir / "credentials.env"),
        # What `down` kills itself if the suite's own process has to be killed before it stops them.
        "processes": {
            **{name: process.pid for name, process in suite.processes.items()},
            **(
                {"triton": suite.triton.pid}
                if suite.triton is not None and suite.triton.pid
                else {}
            ),
        },
    }


def _print_endpoints(console: Console, state: dict[str, Any]) -> None:
    rows = [
        (service, state[service])
        for service in ("router", "orchestrator", "cache", "monitor", "triton")
    ]
    rows.append(("metrics", state["metrics_url"]))
    console.print(_table(None, ("service", "address"), rows))


def _check_not_running(state_file: pathlib.Path) -> None:
    state = _read_state(state_file)
    if state is None:
        return
    if _is_suite_process(int(state.get("pid", 0))):
        raise CliError(
            f"a suite already runs (pid {state['pid']}, router {state.get('router')}; state in {state_file}): "
            "`inferscale down` first, or pass another --state-file",
            EXIT_FAILED,
        )
    state_file.unlink(missing_ok=True)  # left behind by a suite that died without cleaning up


def _ports_in_use(ports: SuitePorts) -> list[str]:
    """The suite's ports that something already listens on, as "name port"."""
    busy = []
    for item in dataclasses.fields(ports):
        port = getattr(ports, item.name)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # SO_REUSEADDR ignores a previous suite's TIME_WAIT leftovers, never a listener.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("0.0.0.0", port))
            except OSError:
                busy.append(f"{item.name} {port}")
    return busy


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_up(args: argparse.Namespace) -> int:
    state_file = args.state_file.resolve()
    _check_not_running(state_file)
    if not args.free_ports:
        # gRPC servers share a port (SO_REUSEPORT) and the health checks would find the other
        # suite's services SERVING: a busy port must stop us here, not look like success.
        busy = _ports_in_use(SuitePorts())
        if busy:
            raise CliError(
                f"the default ports are in use ({', '.join(busy)}): another suite runs? "
                "`inferscale down`, or `inferscale up --free-ports`",
                EXIT_FAILED,
            )
    if args.detach:
        return _up_detached(args, state_file)
    console = _console()
    log_dir = state_file.parent / "logs"
    suite = Suite(ports=SuitePorts.free() if args.free_ports else SuitePorts(), log_dir=log_dir)
    # SIGTERM (from `inferscale down`) must unwind like Ctrl-C: a plain exit would leave Triton and
    # the services running without their parent.
    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, _raise_interrupt),
        signal.SIGINT: signal.getsignal(signal.SIGINT),
    }
    started = time.perf_counter()
    try:
        with console.status("Starting Triton (embedded) and the four services ..."):
            suite.start()
        state = _suite_state(suite, log_dir)
        _write_state(state_file, state)
        console.print(
            f"Suite up in {time.perf_counter() - started:.1f} s (pid {os.getpid()}); logs in {log_dir}"
        )
        _print_endpoints(console, state)
        console.print("Serving until Ctrl-C or `inferscale down` ...")
        sys.stdout.flush()
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    # Triton or a service failed to start; the message carries its log tail.
    except Exception as error:  # noqa: BLE001
        raise CliError(f"the suite did not start: {error}", EXIT_FAILED) from None
    finally:
        # A second Ctrl-C while stopping would orphan Triton; stopping is bounded, so let it finish.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        try:
            console.print("Stopping the suite ...")
            suite.stop()
            state = _read_state(state_file)
            if state is not None and state.get("pid") == os.getpid():
                state_file.unlink(missing_ok=True)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    console.print("Suite stopped.")
    return 0


def _up_detached(args: argparse.Namespace, state_file: pathlib.Path) -> int:
    console = _console()
    log_dir = state_file.parent / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "inferscale.cli", "up", "--state-file", str(state_file)]
    if args.free_ports:
        command.append("--free-ports")
    env = os.environ.copy()
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    log_path = log_dir / "inferscale-up.log"
    started = time.perf_counter()
    with open(log_path, "ab") as log:
        # A new session: the terminal's Ctrl-C and hang-up no longer reach the suite.
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _DETACHED[process.pid] = process
    deadline = time.monotonic() + args.timeout
    state: dict[str, Any] | None = None
    try:
        with console.status(
            f"Starting the suite in the background (pid {process.pid}) ..."
        ) as status:
            while state is None:
                if process.poll() is not None:
                    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
                    raise CliError(
                        f"the suite exited with {process.returncode} while starting; {log_path}:\n{tail}",
                        EXIT_FAILED,
                    )
                if time.monotonic() > deadline:
                    raise TimeoutError
                candidate = _read_state(state_file)
                if candidate is not None and candidate.get("pid") == process.pid:
                    state = candidate
                else:
                    status.update(
                        f"Starting the suite in the background (pid {process.pid}) ... {time.perf_counter() - started:.0f} s"
                    )
                    time.sleep(0.2)
            wait_until_serving(
                state["router"], timeout_seconds=max(1.0, deadline - time.monotonic()), tls=process_tls()
            )
    except KeyboardInterrupt:
        _stop_process(process.pid, {}, timeout=DOWN_TIMEOUT_SECONDS)
        raise
    except TimeoutError:
        _stop_process(process.pid, {}, timeout=DOWN_TIMEOUT_SECONDS)
        state_file.unlink(missing_ok=True)
        raise CliError(
            f"the suite was not serving within {args.timeout:.0f} s; see {log_path}", EXIT_FAILED
        ) from None
    console.print(
        f"Suite up in {time.perf_counter() - started:.1f} s, in the background (pid {process.pid}); "
        f"state in {state_file}, logs in {log_dir}"
    )
    _print_endpoints(console, state)
    down = "inferscale down" + (
        "" if state_file == DEFAULT_STATE_FILE else f" --state-file {state_file}"
    )
    console.print("Point the other commands at it with:", soft_wrap=True)
    for service in ("router", "orchestrator", "cache", "monitor"):
        console.print(
            f"  export INFERSCALE_{service.upper()}_ADDRESS={state[service]}",
            soft_wrap=True,
            highlight=False,
        )
    console.print(f"Stop it with: {down}", soft_wrap=True, highlight=False)
    return 0


def _stop_process(pid: int, leftovers: dict[str, int], *, timeout: float) -> bool:
    """SIGTERMs the suite's process and waits; past ``timeout`` kills it and the processes it left.

    Returns True when it stopped by itself.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _is_running(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            for name, child in leftovers.items():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    # Triton leads its own process group (its python backend stubs are in it).
                    (os.killpg if name == "triton" else os.kill)(child, signal.SIGKILL)
            process = _DETACHED.pop(pid, None)
            if process is not None:
                process.wait()
            return False
        time.sleep(0.2)
    process = _DETACHED.pop(pid, None)
    if process is not None:
        process.wait()
    return True


def cmd_down(args: argparse.Namespace) -> int:
    console = _console()
    state_file = args.state_file.resolve()
    state = _read_state(state_file)
    if state is None:
        raise CliError(
            f"nothing to stop: no suite state file at {state_file} (was it started with `inferscale up --detach`?)",
            EXIT_FAILED,
        )
    pid = int(state.get("pid", 0))
    if not _is_suite_process(pid):
        state_file.unlink(missing_ok=True)
        raise CliError(
            f"nothing to stop: the suite (pid {pid}) no longer runs; removed the stale {state_file}",
            EXIT_FAILED,
        )
    started = time.perf_counter()
    with console.status(f"Stopping the suite (pid {pid}, router {state.get('router')}) ..."):
        clean = _stop_process(pid, dict(state.get("processes", {})), timeout=args.timeout)
    state_file.unlink(missing_ok=True)
    if not clean:
        raise CliError(
            f"the suite (pid {pid}) did not stop within {args.timeout:.0f} s and was killed",
            EXIT_FAILED,
        )
    console.print(f"Suite (pid {pid}) stopped in {time.perf_counter() - started:.1f} s.")
    return 0


# ---------------------------------------------------------------------------------------------
# infer


def _holdout() -> tuple[np.ndarray, np.ndarray]:
    split = load_split()
    return split.x_holdout, split.y_holdout


def _read_pixels(path: str) -> np.ndarray:
    """Reads one 8x8 image: a .npy array, or 64 numbers separated by spaces, commas or newlines ("-": stdin)."""
    try:
        if path.endswith(".npy"):
            values = np.load(path, allow_pickle=False)
        else:
            text = sys.stdin.read() if path == "-" else pathlib.Path(path).read_text()
            values = np.array([float(token) for token in text.replace(",", " ").split()])
    except (OSError, ValueError) as error:
        raise CliError(f"--pixels-file {path}: {error}") from None
    values = np.asarray(values, dtype=np.float32)
    if values.size != N_PIXELS:
        raise CliError(
            f"--pixels-file {path}: holds {values.size} values; an 8x8 image needs {N_PIXELS} (pixel values 0..16)"
        )
    return values.reshape(1, N_PIXELS)


def build_request(args: argparse.Namespace) -> tuple[router_service_pb2.InferRequest, int | None]:
    """The InferRequest the arguments describe, and the true label when the image is a holdout digit."""
    truth = None
    if args.digit is not None:
        images, labels = _holdout()
        if not 0 <= args.digit < len(images):
            raise CliError(
                f"--digit {args.digit} is outside the holdout set: pick 0..{len(images) - 1}"
            )
        image = images[args.digit : args.digit + 1]
        truth = int(labels[args.digit])
    else:
        image = _read_pixels(args.pixels_file)
    strategy = args.strategy or ("single" if args.model else None)
    if strategy == "single" and not args.model:
        raise CliError("--strategy single needs --model NAME (see `inferscale models`)")
    request = router_service_pb2.InferRequest(
        task=args.task,
        inputs=[from_numpy("IMAGE", image.astype(np.float32))],
        strategy=common_pb2.Strategy.Value(f"STRATEGY_{(strategy or 'unspecified').upper()}"),
        model_name=args.model or "",
        confidence_threshold=args.threshold or 0.0,
        escalate_threshold=args.escalate_threshold or 0.0,
        cost_ceiling=args.cost_ceiling or 0.0,
        aggregation=common_pb2.Aggregation.Value(f"AGGREGATION_{(args.aggregation or 'unspecified').upper()}"),
        tier_thresholds=[_tier_thresholds(text) for text in args.tier_threshold or ()],
        skip_cache=args.skip_cache,
    )
    return request, truth


def _tier_thresholds(text: str) -> common_pb2.TierThresholds:
    """Parses TIER=ACCEPT[/ESCALATE], e.g. 1=0.95 or 2=0.9/0.7; the router checks the values."""
    try:
        tier, thresholds = text.split("=", 1)
        accept, _, escalate = thresholds.partition("/")
        return common_pb2.TierThresholds(
            tier=int(tier), accept_threshold=float(accept), escalate_threshold=float(escalate or 0)
        )
    except ValueError:
        raise CliError(f"--tier-threshold {text!r} is not TIER=ACCEPT[/ESCALATE], e.g. 1=0.95 or 2=0.9/0.7") from None


def steps_table(response: router_service_pb2.InferResponse) -> Table:
    """Every escalation step of a response, one row each."""
    rows = [
        (
            step.index,
            step.model.name,
            step.model.version,
            step.tier,
            f"{step.answer.confidence:.3f}",
            f"{step.threshold:.2f}",
            _decision(step.decision),
            step.reason,
            f"{step.latency_ms:.2f}",
            f"{step.cost:g}",
        )
        for step in response.steps
    ]
    return _table(
        "Escalation steps",
        (
            "#",
            "model",
            "version",
            "tier",
            "confidence",
            "threshold",
            "decision",
            "reason",
            "ms",
            "cost",
        ),
        rows,
        numeric={"#", "version", "tier", "confidence", "threshold", "ms", "cost"},
    )


def cmd_infer(args: argparse.Namespace) -> int:
    address = _address(args.router, "router")
    request, truth = build_request(args)
    started = time.perf_counter()
    with _stub(address, router_service_pb2_grpc.RouterServiceStub) as router:
        try:
            response = router.Infer(request, timeout=args.timeout, metadata=_client_metadata())
        except grpc.RpcError as error:
            raise _rpc_error(error, address) from None
    elapsed_ms = (time.perf_counter() - started) * 1000
    if args.json:
        print(json_format.MessageToJson(response))
        return 0
    console = _console()
    answer = f"Answer {response.answer.label} (confidence {response.answer.confidence:.3f})"
    if truth is not None:
        answer += f", truth {truth}: {'right' if response.answer.label == str(truth) else 'wrong'}"
    console.print(answer, highlight=False)
    console.print(steps_table(response))
    if response.HasField("uncertainty"):
        u = response.uncertainty
        console.print(
            f"uncertainty: vote entropy {u.vote_entropy:.3f} bits, probability spread {u.probability_spread:.3f}, "
            f"{u.members_answered} members answered, {u.members_failed} failed",
            highlight=False,
        )
    console.print(
        f"cache {cache_level_label(response.cache_level)}   cost {response.total_cost:g} "
        f"(computed {response.computed_cost:g})   {_strategy(response.plan.strategy)} plan of "
        f"{len(response.plan.steps)} step{'s' if len(response.plan.steps) != 1 else ''}   {elapsed_ms:.1f} ms\n"
        f"trace {response.trace_id}   request {response.request_id}",
        highlight=False,
        soft_wrap=True,
    )
    return 0


# ---------------------------------------------------------------------------------------------
# models / load / unload


def _model_row(info: common_pb2.ModelInfo) -> tuple[Any, ...]:
    return (
        info.model.name,
        info.model.version,
        info.task or "-",
        info.tier,
        f"{info.cost:g}",
        "yes" if info.ready else "no",
        info.problem or "-",
    )


MODEL_COLUMNS = ("name", "version", "task", "tier", "cost", "ready", "problem")


def cmd_models(args: argparse.Namespace) -> int:
    address = _address(args.orchestrator, "orchestrator")
    with _stub(address, orchestrator_service_pb2_grpc.OrchestratorServiceStub) as orchestrator:
        try:
            reply = orchestrator.ListModels(
                orchestrator_service_pb2.ListModelsRequest(task=args.task or ""),
                timeout=RPC_TIMEOUT_SECONDS,
            )
        except grpc.RpcError as error:
            raise _rpc_error(error, address) from None
    title = f"Models of task {args.task!r}" if args.task else "Models"
    _console().print(
        _table(
            f"{title} ({len(reply.models)})",
            MODEL_COLUMNS,
            [_model_row(m) for m in reply.models],
            numeric={"version", "tier", "cost"},
        )
    )
    return 0


def _client_metadata() -> list[tuple[str, str]]:
    """The client token for the router ($INFERSCALE_CLIENT_TOKEN, else the suite `up` started)."""
    return bearer_metadata(_token(CLIENT_TOKEN_VARIABLE))


def _admin_metadata(token: str | None) -> list[tuple[str, str]]:
    # Without a token the call still goes out: the orchestrator says why it refuses.
    return bearer_metadata(token or _token(ADMIN_TOKEN_VARIABLE))


def _admin_call(args: argparse.Namespace, method: str, request: Any) -> Any:
    """Makes one admin call to the orchestrator with the admin token, turning errors into CliError."""
    address = _address(args.orchestrator, "orchestrator")
    with _stub(address, orchestrator_service_pb2_grpc.OrchestratorServiceStub) as orchestrator:
        try:
            return getattr(orchestrator, method)(request, metadata=_admin_metadata(args.token), timeout=args.timeout)
        except grpc.RpcError as error:
            raise _rpc_error(error, address) from None


def cmd_load(args: argparse.Namespace) -> int:
    reply = _admin_call(args, "LoadModel", orchestrator_service_pb2.LoadModelRequest(model_name=args.model))
    _console().print(
        _table(
            f"Loaded {args.model}",
            MODEL_COLUMNS,
            [_model_row(reply.model)],
            numeric={"version", "tier", "cost"},
        )
    )
    return 0


def cmd_unload(args: argparse.Namespace) -> int:
    reply = _admin_call(args, "UnloadModel", orchestrator_service_pb2.UnloadModelRequest(model_name=args.model))
    _console().print(
        f"Unloaded {args.model}; {reply.cache_entries_removed} cache entries it produced were removed.",
        highlight=False,
    )
    return 0


# ---------------------------------------------------------------------------------------------
# stats


def _monitor_tables(stats: monitor_service_pb2.GetStatsResponse) -> list[Table]:
    strategies = _table(
        "Requests per strategy",
        ("strategy", "requests", "errors", "cost"),
        [
            (_strategy(s.strategy), s.requests, s.errors, f"{s.total_cost:g}")
            for s in stats.strategies
        ],
        numeric={"requests", "errors", "cost"},
    )
    models = _table(
        "Steps per model",
        (
            "tier",
            "model",
            "version",
            "steps",
            "accepted",
            "escalated",
            "mean ms",
            "mean confidence",
            "cost",
        ),
        [
            (
                m.tier,
                m.model.name,
                m.model.version,
                m.steps,
                m.accepted,
                m.escalated,
                f"{m.mean_latency_ms:.2f}",
                f"{m.mean_confidence:.3f}",
                f"{m.total_cost:g}",
            )
            for m in stats.models
        ],
        numeric={
            "tier",
            "version",
            "steps",
            "accepted",
            "escalated",
            "mean ms",
            "mean confidence",
            "cost",
        },
    )
    levels = _table(
        "Cache lookups (monitor)",
        ("level", "hits", "misses"),
        [(cache_level_label(c.level), c.hits, c.misses) for c in stats.cache_levels],
        numeric={"hits", "misses"},
    )
    return [strategies, models, levels]


def _cache_table(reply: cache_service_pb2.GetCacheStatsResponse) -> Table:
    return _table(
        "Cache levels (cache service)",
        (
            "level",
            "hits",
            "misses",
            "entries",
            "bytes",
            "max bytes",
            "evictions",
            "removals",
            "compute saved",
        ),
        [
            (
                cache_level_label(level.level),
                level.hits,
                level.misses,
                level.entries,
                level.bytes,
                level.max_bytes,
                level.evictions,
                level.removals,
                f"{level.compute_saved:g}",
            )
            for level in reply.levels
        ],
        numeric={
            "hits",
            "misses",
            "entries",
            "bytes",
            "max bytes",
            "evictions",
            "removals",
            "compute saved",
        },
    )


def cmd_stats(args: argparse.Namespace) -> int:
    console = _console()
    failures: list[CliError] = []
    # The two services answer independently: one that is down still leaves the other's tables.
    monitor_address = _address(args.monitor, "monitor")
    with _stub(monitor_address, monitor_service_pb2_grpc.MonitorServiceStub) as monitor:
        try:
            stats = monitor.GetStats(
                monitor_service_pb2.GetStatsRequest(), timeout=RPC_TIMEOUT_SECONDS
            )
        except grpc.RpcError as error:
            failures.append(_rpc_error(error, monitor_address))
        else:
            console.print(
                f"Monitor {monitor_address}: {stats.requests} requests, {stats.events_recorded} events recorded, "
                f"{stats.events_dropped} dropped",
                highlight=False,
            )
            for table in _monitor_tables(stats):
                console.print(table)
    cache_address = _address(args.cache, "cache")
    with _stub(cache_address, cache_service_pb2_grpc.CacheServiceStub) as cache:
        try:
            reply = cache.GetCacheStats(
                cache_service_pb2.GetCacheStatsRequest(), timeout=RPC_TIMEOUT_SECONDS
            )
        except grpc.RpcError as error:
            failures.append(_rpc_error(error, cache_address))
        else:
            console.print(f"Cache {cache_address}:", highlight=False)
            console.print(_cache_table(reply))
    for failure in failures[:-1]:
        print(f"error: {failure}", file=sys.stderr)
    if failures:
        raise failures[-1]
    return 0


# ---------------------------------------------------------------------------------------------
# workload


def workload_indices(requests: int, repeats: int, holdout_size: int) -> list[int]:
    """The holdout images the workload sends: the demo's order (seed 7), then the first ``repeats`` again."""
    order = [int(i) for i in np.random.default_rng(7).permutation(holdout_size)[:requests]]
    return order + order[:repeats]


def cmd_workload(args: argparse.Namespace) -> int:
    if args.requests < 1 or args.repeats < 0:
        raise CliError("--requests must be at least 1 and --repeats at least 0")
    address = _address(args.router, "router")
    images, labels = _holdout()
    picked = workload_indices(args.requests, min(args.repeats, args.requests), len(images))
    console = _console()
    right = hits = 0
    costs: list[float] = []
    latencies: list[float] = []
    escalated: dict[int, int] = {}
    accepted: dict[int, int] = {}
    top_cost = 0.0
    progress = Progress(
        TextColumn("[bold]workload"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[summary]}"),
        console=console,
        transient=True,
        # Piped or captured output gets the summary alone, not a bar redrawn line by line.
        disable=not console.is_terminal,
    )
    with progress, _stub(address, router_service_pb2_grpc.RouterServiceStub) as router:
        task = progress.add_task("requests", total=len(picked), summary="")
        for number, index in enumerate(picked, start=1):
            request = router_service_pb2.InferRequest(
                request_id=f"cli-workload-{number}",
                task="digits",
                inputs=[from_numpy("IMAGE", images[index : index + 1].astype(np.float32))],
            )
            started = time.perf_counter()
            try:
                response = router.Infer(request, timeout=RPC_TIMEOUT_SECONDS, metadata=_client_metadata())
            except grpc.RpcError as error:
                raise _rpc_error(error, address) from None
            latencies.append((time.perf_counter() - started) * 1000)
            right += int(response.answer.label == str(labels[index]))
            costs.append(response.total_cost)
            hits += int(response.cache_level == common_pb2.CACHE_LEVEL_L4_FINAL_RESULT)
            for step in response.steps:
                if step.decision == common_pb2.DECISION_ESCALATE:
                    escalated[step.tier] = escalated.get(step.tier, 0) + 1
                elif step.decision == common_pb2.DECISION_ACCEPT:
                    accepted[step.tier] = accepted.get(step.tier, 0) + 1
            top_cost = max([top_cost, *(s.cost for s in response.plan.steps)])
            progress.update(task, advance=1, summary=f"{right}/{number} right, {hits} cached")
    total = len(picked)
    tiers = sorted(set(escalated) | set(accepted))
    rows: list[tuple[str, str]] = [
        ("requests", f"{total} ({args.requests} distinct + {total - args.requests} repeats)"),
        ("accuracy", f"{right}/{total} = {right / total:.1%}"),
        (
            "mean cost",
            f"{np.mean(costs):.2f} (total {sum(costs):g}; the top tier alone: {top_cost * total:g})",
        ),
        ("cache hits (L4)", f"{hits}/{total}"),
        *(
            (
                f"tier {tier}",
                f"accepted {accepted.get(tier, 0)}, escalated {escalated.get(tier, 0)}",
            )
            for tier in tiers
        ),
        ("latency p50", f"{np.percentile(latencies, 50):.2f} ms"),
        ("latency p99", f"{np.percentile(latencies, 99):.2f} ms"),
    ]
    console.print(_table(f"Workload through {address}", ("", "value"), rows))
    return 0


# ---------------------------------------------------------------------------------------------
# bench


def cmd_bench(args: argparse.Namespace) -> int:
    script = BENCHMARKS[args.benchmark]
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    print(
        f"$ {pathlib.Path(sys.executable).name} {script.relative_to(REPO_ROOT)} {' '.join(extra)}".rstrip(),
        flush=True,
    )
    env = os.environ.copy()
    env["PYTHONUNBUFFERED"] = (
        "1"  # so that the benchmark's progress lines arrive as they are printed
    )
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    process = subprocess.Popen(
        [sys.executable, str(script), *extra],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    assert process.stdout is not None
    try:
        # Forwarded line by line (not inherited) so that whoever holds our stdout sees it as it comes.
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
        return process.wait()
    except KeyboardInterrupt:
        process.wait()  # the benchmark got the same Ctrl-C and stops its own suite
        return 130
    finally:
        process.stdout.close()


# ---------------------------------------------------------------------------------------------
# The parser


def _address_option(parser: argparse.ArgumentParser, service: str) -> None:
    default = f"127.0.0.1:{getattr(SuitePorts(), service)}"
    parser.add_argument(
        f"--{service}",
        metavar="ADDR",
        help=f"the {service}'s host:port (default: $INFERSCALE_{service.upper()}_ADDRESS, else {default})",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="inferscale",
        description="InferScale's command line: bring the suite up and down, send requests, read the registry and the counts.",
        epilog="Addresses default to the services' own variables (INFERSCALE_ROUTER_ADDRESS, ...). "
        "Exit status: 0 success, 1 the suite could not be started or stopped, 2 a refused request or a bad argument.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str, help: str, handler: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
        sub.set_defaults(handler=handler)
        return sub

    state_help = f"where the running suite's pid and addresses are kept (default: {DEFAULT_STATE_FILE.relative_to(REPO_ROOT)} in the repository)"
    up = command("up", "bring the suite up: Triton (embedded) and the four services", cmd_up)
    up.add_argument(
        "--free-ports", action="store_true", help="use free ports instead of the default ones"
    )
    up.add_argument(
        "--detach", action="store_true", help="run in the background; return once the router serves"
    )
    up.add_argument(
        "--state-file",
        type=pathlib.Path,
        default=DEFAULT_STATE_FILE,
        metavar="PATH",
        help=state_help,
    )
    up.add_argument(
        "--timeout",
        type=float,
        default=180.0,
        metavar="S",
        help="with --detach, the longest to wait for the router (default 180)",
    )

    down = command("down", "stop a suite started with `up --detach`", cmd_down)
    down.add_argument(
        "--state-file",
        type=pathlib.Path,
        default=DEFAULT_STATE_FILE,
        metavar="PATH",
        help=state_help,
    )
    down.add_argument(
        "--timeout",
        type=float,
        default=DOWN_TIMEOUT_SECONDS,
        metavar="S",
        help="the longest to wait before killing it (default 60)",
    )

    infer = command(
        "infer", "send one request and show its answer and every escalation step", cmd_infer
    )
    _address_option(infer, "router")
    source = infer.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--digit",
        type=int,
        metavar="N",
        help="the digits holdout image with index N (as inferscale.models.digits.load_split splits it)",
    )
    source.add_argument(
        "--pixels-file",
        metavar="F",
        help="an 8x8 image: a .npy file, or 64 numbers (0..16) in text; - reads stdin",
    )
    infer.add_argument(
        "--task", default="digits", help="the task whose models answer (default digits)"
    )
    infer.add_argument(
        "--threshold",
        type=float,
        metavar="T",
        help="the cascade's accept threshold in (0, 1] (default: the router's own, 0.90 unless configured)",
    )
    infer.add_argument(
        "--strategy",
        choices=strategy_choices(),
        help="how to spend compute: cascade over the tiers, single runs one --model "
        "(default: the router chooses)",
    )
    infer.add_argument(
        "--model", metavar="NAME", help="the model of --strategy single (implies it)"
    )
    infer.add_argument(
        "--escalate-threshold",
        type=float,
        metavar="T",
        help="the cascade's escalate threshold, at most the accept threshold (default: the router's, 0.70)",
    )
    infer.add_argument(
        "--tier-threshold",
        action="append",
        metavar="TIER=ACCEPT[/ESCALATE]",
        help="thresholds for one tier, e.g. 1=0.95; repeat for several tiers",
    )
    infer.add_argument(
        "--cost-ceiling", type=float, metavar="UNITS", help="the most compute the request may spend"
    )
    infer.add_argument(
        "--aggregation",
        choices=[n.removeprefix("AGGREGATION_").lower() for n in common_pb2.Aggregation.keys() if not n.endswith("UNSPECIFIED")],
        help="how an ensemble combines its members (with --strategy ensemble)",
    )
    infer.add_argument(
        "--skip-cache", action="store_true", help="neither read nor write the final-result cache"
    )
    infer.add_argument("--json", action="store_true", help="print the whole InferResponse as JSON")
    infer.add_argument(
        "--timeout",
        type=float,
        default=RPC_TIMEOUT_SECONDS,
        metavar="S",
        help="the call's deadline (default 30)",
    )

    models = command("models", "list the models the registry knows", cmd_models)
    _address_option(models, "orchestrator")
    models.add_argument("--task", metavar="T", help="only the models of this task")

    stats = command("stats", "show what the monitor counted and what the cache holds", cmd_stats)
    _address_option(stats, "monitor")
    _address_option(stats, "cache")

    for name, verb, handler in (
        ("load", "load or reload", cmd_load),
        ("unload", "unload", cmd_unload),
    ):
        admin = command(
            name, f"{verb} a model on Triton (admin call, needs the admin token)", handler
        )
        admin.add_argument(
            "model", metavar="MODEL", help="the model's name in the Triton repository"
        )
        _address_option(admin, "orchestrator")
        admin.add_argument(
            "--token", help=f"the orchestrator's admin token (default: ${ADMIN_TOKEN_VARIABLE})"
        )
        admin.add_argument(
            "--timeout",
            type=float,
            default=120.0,
            metavar="S",
            help="the call's deadline (default 120)",
        )

    bench = command("bench", "run a benchmark script; arguments after its name go to it", cmd_bench)
    bench.add_argument(
        "benchmark",
        choices=sorted(BENCHMARKS),
        help="models: benchmarks/model_costs.py; overhead: benchmarks/router_overhead.py",
    )
    bench.add_argument(
        "extra",
        nargs=argparse.REMAINDER,
        metavar="ARGS",
        help="passed to the script (`--help` shows its own options)",
    )

    workload = command(
        "workload", "send holdout digits through the router and summarise", cmd_workload
    )
    _address_option(workload, "router")
    workload.add_argument(
        "--requests", type=int, default=30, metavar="N", help="distinct digits to send (default 30)"
    )
    workload.add_argument(
        "--repeats",
        type=int,
        default=6,
        metavar="K",
        help="of them, how many to send again (default 6)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: runs one subcommand and returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except CliError as error:
        sys.stdout.flush()
        print(f"error: {error}", file=sys.stderr)
        return error.status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
