"""``inferscale infer``: one request of any task through the router, its answer and every step, or streamed live.

    inferscale infer --digit 7                          a digits holdout image (its truth shown)
    inferscale infer --pixels-file img.txt | --npy IMAGE.npy
    inferscale infer --text "turn on the lights"        a text input (the intents task)
    inferscale infer --arc-task 007bbfb7.json           an ARC task file (the arc task)
    inferscale infer --prompt "What is 12 * 7?" --stream  a text task's answer, tokens as generated
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import grpc
from google.protobuf import json_format
from rich.table import Table

from inferscale.arc.tasks import Grid
from inferscale.cli_support import (
    RPC_TIMEOUT_SECONDS,
    CliError,
    address_option,
    cache_level_label,
    client_metadata,
    decision_label,
    make_console,
    make_table,
    open_stub,
    resolve_address,
    rpc_error,
    strategy_choices,
    strategy_label,
)
from inferscale.limits import MAX_INPUT_TENSORS
from inferscale.request_inputs import (
    DEFAULT_TEXT_INPUT,
    arc_task_tensor,
    chat_context,
    grid_matches,
    holdout_digit,
    npy_tensor,
    read_arc_task,
    read_pixels,
    text_prompt,
    text_tensor,
)
from inferscale.stream_view import StreamView
from inferscale.tensors import from_numpy
from inferscale.v1 import common_pb2, router_service_pb2, router_service_pb2_grpc

# The task each kind of input goes to when --task is not given.
DEFAULT_TASKS = {
    "digit": "digits",
    "pixels_file": "digits",
    "npy": "digits",
    "text": "intents",
    "arc_task": "arc",
    "prompt": "math",
}
# Generation runs at tens of tokens a second on a CPU: a text task's call gets longer by default.
TEXT_TIMEOUT_SECONDS = 300.0
# The options that shape a prompt, refused with any other input.
PROMPT_OPTIONS = ("system", "example", "max_tokens", "temperature")
# ARC-AGI scores a task right when either of two attempts is: the answer, then alternatives[0].
ARC_ATTEMPTS = 2


def add_infer_arguments(infer: argparse.ArgumentParser) -> None:
    """The options of ``inferscale infer``."""
    address_option(infer, "router")
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
    source.add_argument(
        "--npy",
        action="append",
        metavar="FILE[:NAME]",
        help="a tensor from a .npy file, sent as the input NAME (default: the file name without .npy); "
        "repeat for several inputs (task digits unless --task)",
    )
    source.add_argument(
        "--text", metavar="STRING", help="a text input, one BYTES element (task intents unless --task)"
    )
    source.add_argument(
        "--arc-task",
        metavar="FILE.json",
        help="an ARC task file (train and test pairs); its training pairs and one test input go to "
        "the ARC solvers, and its test output, when it has one, is the truth (task arc unless --task)",
    )
    source.add_argument(
        "--prompt",
        metavar="TEXT",
        help="the message a text task's models answer (task math unless --task)",
    )
    infer.add_argument(
        "--task",
        help="the task whose models answer (default: digits for an image or tensor, intents for "
        "--text, arc for --arc-task, math for --prompt)",
    )
    infer.add_argument(
        "--text-input",
        default=DEFAULT_TEXT_INPUT,
        metavar="NAME",
        help=f"the input --text is sent as (default {DEFAULT_TEXT_INPUT})",
    )
    infer.add_argument(
        "--arc-test", type=int, default=0, metavar="N", help="which test input of --arc-task (default 0)"
    )
    prompt = infer.add_argument_group("a prompt's turns and sampling (with --prompt)")
    prompt.add_argument("--system", metavar="TEXT", help="a system instruction before the prompt")
    prompt.add_argument(
        "--example",
        nargs=2,
        action="append",
        metavar=("QUESTION", "ANSWER"),
        help="a few-shot turn: a question and its answer, before the prompt; repeat for several",
    )
    prompt.add_argument(
        "--max-tokens",
        type=int,
        metavar="N",
        help="the most tokens one generation may produce (default: the router's, 256)",
    )
    prompt.add_argument(
        "--temperature",
        type=float,
        metavar="T",
        help="sampling temperature in [0, 2], 0 is greedy (default: greedy, and the router's 0.7 "
        "for self_consistency, best_of_n and search)",
    )
    infer.add_argument(
        "--stream",
        action="store_true",
        help="show each step as it starts, its tokens as they are generated and its decision (InferStream)",
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
        help="how to spend compute: cascade over the tiers, single runs one --model, self_consistency "
        "and best_of_n sample a text task's models up to --max-calls times (default: the router chooses)",
    )
    infer.add_argument(
        "--model", metavar="NAME", help="the model of --strategy single (implies it), or the one that samples with self_consistency or best_of_n"
    )
    infer.add_argument(
        "--max-calls",
        type=int,
        default=0,
        metavar="N",
        help="search, self_consistency, best_of_n: the most model calls, 1 to 64 (default: the router's, 8)",
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
    infer.add_argument(
        "--json",
        action="store_true",
        help="print the whole InferResponse as JSON (with --stream, every event as one JSON line)",
    )
    infer.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help=f"the call's deadline (default {RPC_TIMEOUT_SECONDS:g}; {TEXT_TIMEOUT_SECONDS:g} with --prompt)",
    )


def _source(args: argparse.Namespace) -> str:
    """Which input the arguments give: the destination name of the one source option set."""
    return next(name for name in DEFAULT_TASKS if getattr(args, name) is not None)


def _inputs(args: argparse.Namespace, source: str) -> tuple[list[common_pb2.InferTensor], str | Grid | None]:
    """The request's tensors and, where the input comes with one, the answer it should get."""
    if source == "digit":
        image, label = holdout_digit(args.digit)
        return [from_numpy("IMAGE", image)], label
    if source == "pixels_file":
        return [from_numpy("IMAGE", read_pixels(args.pixels_file))], None
    if source == "npy":
        if len(args.npy) > MAX_INPUT_TENSORS:
            raise ValueError(f"--npy given {len(args.npy)} times: a request carries at most {MAX_INPUT_TENSORS} tensors")
        return [npy_tensor(spec) for spec in args.npy], None
    if source == "text":
        return [text_tensor(args.text, args.text_input)], None
    task = read_arc_task(args.arc_task)
    tensor = arc_task_tensor(task, args.arc_test)
    return [tensor], task.test[args.arc_test].output


def build_request(args: argparse.Namespace) -> tuple[router_service_pb2.InferRequest, str | Grid | None]:
    """The InferRequest the arguments describe, and the true answer when the input carries one
    (a holdout digit's label, an ARC task file's test output)."""
    source = _source(args)
    if source != "prompt":
        given = [f"--{name.replace('_', '-')}" for name in PROMPT_OPTIONS if getattr(args, name) is not None]
        if given:
            raise CliError(f"{', '.join(given)} go{'es' if len(given) == 1 else ''} with --prompt")
    strategy = args.strategy or ("single" if args.model else None)
    if strategy == "single" and not args.model:
        raise CliError("--strategy single needs --model NAME (see `inferscale models`)")
    request = router_service_pb2.InferRequest(
        task=args.task or DEFAULT_TASKS[source],
        strategy=common_pb2.Strategy.Value(f"STRATEGY_{(strategy or 'unspecified').upper()}"),
        model_name=args.model or "",
        confidence_threshold=args.threshold or 0.0,
        escalate_threshold=args.escalate_threshold or 0.0,
        cost_ceiling=args.cost_ceiling or 0.0,
        aggregation=common_pb2.Aggregation.Value(f"AGGREGATION_{(args.aggregation or 'unspecified').upper()}"),
        tier_thresholds=[_tier_thresholds(text) for text in args.tier_threshold or ()],
        max_calls=args.max_calls,
        skip_cache=args.skip_cache,
    )
    if source == "prompt":
        # The router checks every bound and names the field it refuses.
        context = chat_context(args.system, [tuple(example) for example in args.example or ()])
        request.text.CopyFrom(
            text_prompt(args.prompt, context, max_tokens=args.max_tokens or 0, temperature=args.temperature)
        )
        return request, None
    try:
        inputs, truth = _inputs(args, source)
    except ValueError as error:
        raise CliError(str(error)) from None
    request.inputs.extend(inputs)
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
            decision_label(step.decision),
            step.reason,
            f"{step.latency_ms:.2f}",
            f"{step.cost:g}",
        )
        for step in response.steps
    ]
    return make_table(
        "Escalation steps",
        ("#", "model", "version", "tier", "confidence", "threshold", "decision", "reason", "ms", "cost"),
        rows,
        numeric={"#", "version", "tier", "confidence", "threshold", "ms", "cost"},
    )


def verdict(response: router_service_pb2.InferResponse, truth: str | Grid) -> str:
    """``truth 7: right`` for a label; for a grid, whether one of ARC's two attempts holds it."""
    if isinstance(truth, str):
        return f"truth {truth}: {'right' if response.answer.label == truth else 'wrong'}"
    attempts = [response.answer, *response.alternatives][:ARC_ATTEMPTS]
    hit = next((number for number, answer in enumerate(attempts, start=1) if grid_matches(answer.label, truth)), None)
    return "the task file's test output: " + ("wrong" if hit is None else "right" if hit == 1 else f"right at attempt {hit}")


def cmd_infer(args: argparse.Namespace) -> int:
    """Sends the request and prints its answer, steps and cost (live with --stream)."""
    request, truth = build_request(args)
    timeout = args.timeout or (TEXT_TIMEOUT_SECONDS if request.HasField("text") else RPC_TIMEOUT_SECONDS)
    address = resolve_address(args.router, "router")
    started = time.perf_counter()
    tokens_shown = 0
    with open_stub(address, router_service_pb2_grpc.RouterServiceStub) as router:
        try:
            if args.stream:
                response, tokens_shown = _stream(router, request, timeout, as_json=args.json)
            else:
                response = router.Infer(request, timeout=timeout, metadata=client_metadata())
        except grpc.RpcError as error:
            raise rpc_error(error, address) from None
    elapsed_ms = (time.perf_counter() - started) * 1000
    if args.json:
        if not args.stream:
            print(json_format.MessageToJson(response))
        return 0
    _print_response(response, truth, elapsed_ms, text_shown=tokens_shown > 0, streamed=args.stream)
    return 0


def _stream(
    router: Any, request: router_service_pb2.InferRequest, timeout: float, *, as_json: bool
) -> tuple[router_service_pb2.InferResponse, int]:
    """Makes the InferStream call, writing each event as it comes; returns the last event's
    response and how many tokens were shown."""
    call = router.InferStream(
        router_service_pb2.InferStreamRequest(request=request), timeout=timeout, metadata=client_metadata()
    )
    view = StreamView(sys.stdout)
    try:
        for event in call:
            if as_json:
                print(json_format.MessageToJson(event, indent=None), flush=True)
            else:
                view.show(event)
            if event.HasField("response"):
                return event.response, view.tokens_shown
    finally:
        # Leaving early (Ctrl-C) must end the generation on Triton, not leave it running for no one.
        call.cancel()
    raise CliError("the router ended the stream without a response")


def _print_response(
    response: router_service_pb2.InferResponse,
    truth: str | Grid | None,
    elapsed_ms: float,
    *,
    text_shown: bool,
    streamed: bool,
) -> None:
    console = make_console()
    answer = f"Answer {response.answer.label or '(none)'} (confidence {response.answer.confidence:.3f})"
    if truth is not None:
        answer += f", {verdict(response, truth)}"
    console.print(answer, highlight=False, markup=False)
    if response.answer.text and not text_shown:
        # Unstreamed, or served from a cache: the text was not shown as it was generated.
        console.print(response.answer.text.strip(), highlight=False, markup=False)
    if not streamed:
        # A stream showed each step's decision as it was taken.
        console.print(steps_table(response))
    if response.HasField("uncertainty"):
        u = response.uncertainty
        console.print(
            f"uncertainty: vote entropy {u.vote_entropy:.3f} bits, probability spread {u.probability_spread:.3f}, "
            f"{u.members_answered} members answered, {u.members_failed} failed",
            highlight=False,
        )
    # A cache's answer generated nothing now; its steps tell what it cost when it ran.
    computed = response.cache_level == common_pb2.CACHE_LEVEL_UNSPECIFIED
    tokens = sum(step.usage.output_tokens for step in response.steps) if computed else 0
    console.print(
        f"cache {cache_level_label(response.cache_level)}   cost {response.total_cost:g} "
        f"(computed {response.computed_cost:g})   {strategy_label(response.plan.strategy)} plan of "
        f"{len(response.plan.steps)} step{'s' if len(response.plan.steps) != 1 else ''}"
        f"{f'   {tokens} tokens generated' if tokens else ''}   {elapsed_ms:.1f} ms\n"
        f"trace {response.trace_id}   request {response.request_id}",
        highlight=False,
        soft_wrap=True,
    )
