"""The ``inferscale`` command line: brings the suite up and down, sends requests and reads what the services report.

    inferscale up [--free-ports] [--detach]      the suite on the embedded Triton
    inferscale infer --digit 7                   one request, with every escalation step
    inferscale infer --prompt TEXT --stream      a text task's answer, its tokens shown as generated
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
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from inferscale.auth import ADMIN_TOKEN_VARIABLE, bearer_metadata
from inferscale.cli_infer import add_infer_arguments, cmd_infer
from inferscale.cli_support import (
    DEFAULT_STATE_FILE,
    EXIT_FAILED,
    RPC_TIMEOUT_SECONDS,
    CliError,
    address_option,
    cache_level_label,
    client_metadata,
    make_console,
    make_table,
    open_stub,
    read_state,
    resolve_address,
    rpc_error,
    strategy_label,
    suite_token,
)
from inferscale.request_inputs import digits_holdout
from inferscale.rpc import wait_until_serving
from inferscale.suite import REPO_ROOT, Suite, SuitePorts
from inferscale.tensors import from_numpy
from inferscale.tls import process_tls
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

BENCHMARKS = {
    "models": REPO_ROOT / "benchmarks" / "model_costs.py",
    "overhead": REPO_ROOT / "benchmarks" / "router_overhead.py",
}
# The longest `down` waits for a suite to drain and stop before it kills what is left.
DOWN_TIMEOUT_SECONDS = 60.0

# Detached suites started by this process, kept so that `down` in the same process (the tests)
# reaps its own child instead of waiting on a zombie, and Popen never warns it was dropped.
_DETACHED: dict[int, subprocess.Popen[bytes]] = {}


# ---------------------------------------------------------------------------------------------
# up / down


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
    console.print(make_table(None, ("service", "address"), rows))


def _check_not_running(state_file: pathlib.Path) -> None:
    state = read_state(state_file)
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
    console = make_console()
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
            state = read_state(state_file)
            if state is not None and state.get("pid") == os.getpid():
                state_file.unlink(missing_ok=True)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    console.print("Suite stopped.")
    return 0


def _up_detached(args: argparse.Namespace, state_file: pathlib.Path) -> int:
    console = make_console()
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
                candidate = read_state(state_file)
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
    console = make_console()
    state_file = args.state_file.resolve()
    state = read_state(state_file)
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
    address = resolve_address(args.orchestrator, "orchestrator")
    with open_stub(address, orchestrator_service_pb2_grpc.OrchestratorServiceStub) as orchestrator:
        try:
            reply = orchestrator.ListModels(
                orchestrator_service_pb2.ListModelsRequest(task=args.task or ""),
                timeout=RPC_TIMEOUT_SECONDS,
            )
        except grpc.RpcError as error:
            raise rpc_error(error, address) from None
    title = f"Models of task {args.task!r}" if args.task else "Models"
    make_console().print(
        make_table(
            f"{title} ({len(reply.models)})",
            MODEL_COLUMNS,
            [_model_row(m) for m in reply.models],
            numeric={"version", "tier", "cost"},
        )
    )
    return 0


def _admin_metadata(token: str | None) -> list[tuple[str, str]]:
    # Without a token the call still goes out: the orchestrator says why it refuses.
    return bearer_metadata(token or suite_token(ADMIN_TOKEN_VARIABLE))


def _admin_call(args: argparse.Namespace, method: str, request: Any) -> Any:
    """Makes one admin call to the orchestrator with the admin token, turning errors into CliError."""
    address = resolve_address(args.orchestrator, "orchestrator")
    with open_stub(address, orchestrator_service_pb2_grpc.OrchestratorServiceStub) as orchestrator:
        try:
            return getattr(orchestrator, method)(request, metadata=_admin_metadata(args.token), timeout=args.timeout)
        except grpc.RpcError as error:
            raise rpc_error(error, address) from None


def cmd_load(args: argparse.Namespace) -> int:
    reply = _admin_call(args, "LoadModel", orchestrator_service_pb2.LoadModelRequest(model_name=args.model))
    make_console().print(
        make_table(
            f"Loaded {args.model}",
            MODEL_COLUMNS,
            [_model_row(reply.model)],
            numeric={"version", "tier", "cost"},
        )
    )
    return 0


def cmd_unload(args: argparse.Namespace) -> int:
    reply = _admin_call(args, "UnloadModel", orchestrator_service_pb2.UnloadModelRequest(model_name=args.model))
    make_console().print(
        f"Unloaded {args.model}; {reply.cache_entries_removed} cache entries it produced were removed.",
        highlight=False,
    )
    return 0


# ---------------------------------------------------------------------------------------------
# stats


def _monitor_tables(stats: monitor_service_pb2.GetStatsResponse) -> list[Table]:
    strategies = make_table(
        "Requests per strategy",
        ("strategy", "requests", "errors", "cost"),
        [
            (strategy_label(s.strategy), s.requests, s.errors, f"{s.total_cost:g}")
            for s in stats.strategies
        ],
        numeric={"requests", "errors", "cost"},
    )
    models = make_table(
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
    levels = make_table(
        "Cache lookups (monitor)",
        ("level", "hits", "misses"),
        [(cache_level_label(c.level), c.hits, c.misses) for c in stats.cache_levels],
        numeric={"hits", "misses"},
    )
    return [strategies, models, levels]


def _cache_table(reply: cache_service_pb2.GetCacheStatsResponse) -> Table:
    return make_table(
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
    console = make_console()
    failures: list[CliError] = []
    # The two services answer independently: one that is down still leaves the other's tables.
    monitor_address = resolve_address(args.monitor, "monitor")
    with open_stub(monitor_address, monitor_service_pb2_grpc.MonitorServiceStub) as monitor:
        try:
            stats = monitor.GetStats(
                monitor_service_pb2.GetStatsRequest(), timeout=RPC_TIMEOUT_SECONDS
            )
        except grpc.RpcError as error:
            failures.append(rpc_error(error, monitor_address))
        else:
            console.print(
                f"Monitor {monitor_address}: {stats.requests} requests, {stats.events_recorded} events recorded, "
                f"{stats.events_dropped} dropped",
                highlight=False,
            )
            for table in _monitor_tables(stats):
                console.print(table)
    cache_address = resolve_address(args.cache, "cache")
    with open_stub(cache_address, cache_service_pb2_grpc.CacheServiceStub) as cache:
        try:
            reply = cache.GetCacheStats(
                cache_service_pb2.GetCacheStatsRequest(), timeout=RPC_TIMEOUT_SECONDS
            )
        except grpc.RpcError as error:
            failures.append(rpc_error(error, cache_address))
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
    address = resolve_address(args.router, "router")
    images, labels = digits_holdout()
    picked = workload_indices(args.requests, min(args.repeats, args.requests), len(images))
    console = make_console()
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
    with progress, open_stub(address, router_service_pb2_grpc.RouterServiceStub) as router:
        task = progress.add_task("requests", total=len(picked), summary="")
        for number, index in enumerate(picked, start=1):
            request = router_service_pb2.InferRequest(
                request_id=f"cli-workload-{number}",
                task="digits",
                inputs=[from_numpy("IMAGE", images[index : index + 1].astype(np.float32))],
            )
            started = time.perf_counter()
            try:
                response = router.Infer(request, timeout=RPC_TIMEOUT_SECONDS, metadata=client_metadata())
            except grpc.RpcError as error:
                raise rpc_error(error, address) from None
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
    console.print(make_table(f"Workload through {address}", ("", "value"), rows))
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
    add_infer_arguments(infer)

    models = command("models", "list the models the registry knows", cmd_models)
    address_option(models, "orchestrator")
    models.add_argument("--task", metavar="T", help="only the models of this task")

    stats = command("stats", "show what the monitor counted and what the cache holds", cmd_stats)
    address_option(stats, "monitor")
    address_option(stats, "cache")

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
        address_option(admin, "orchestrator")
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
    address_option(workload, "router")
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
