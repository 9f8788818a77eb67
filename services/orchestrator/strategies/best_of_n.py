"""Best-of-N: sampled answers from the plan's models in turn, each scored by the plan's verifier.

The verifier, a text model, reads (prompt, answer) and is asked whether the answer is correct;
its probability of replying yes is the answer's score. Each sample and each verification is a
step (the verification DECISION_ANALYZED, index -1, its cost counted). The best-scored answer
wins; one whose score reaches its step's threshold ends the search before ``plan.max_calls``.
"""

from __future__ import annotations

from inferscale import telemetry
from inferscale.errors import ModelFailed, Unavailable
from inferscale.v1 import common_pb2, orchestrator_service_pb2
from services.orchestrator.registry import RegisteredModel
from services.orchestrator.step_runner import (
    TRACER,
    Execution,
    StepRunner,
    ran,
    text_output,
)


async def run(
    runner: StepRunner, execution: Execution, models: list[RegisteredModel | None]
) -> orchestrator_service_pb2.ExecuteResponse:
    """Samples round-robin over the models and verifies each answer, until one is good enough or the calls run out."""
    plan, response = execution.plan, execution.response
    runner.record_skipped(execution, models)
    verifier = runner.verifier(execution)
    members = [(i, m) for i, m in enumerate(models) if m is not None]
    best: tuple[float, int, str] | None = None  # (score, position, label)
    for call_number in range(plan.max_calls):
        index, model = members[call_number % len(members)]
        step = plan.steps[index]
        if best is not None and runner.stopped(execution, index, step, model, "the best answer so far stands"):
            break
        position = len(response.steps)
        with runner.step(execution, index, step, model) as span:
            call = await runner.call_or_record_failure(execution, index, step, model, span)
            if call is None:
                continue
            runner.record(execution, ran(index, step, call, common_pb2.DECISION_CONTRIBUTED, "sampled; the verifier scores it next"), span)
        # A text that failed its model's answer check scores 0 without a verifier call.
        score = 0.0 if call.slipped else await _verify(runner, execution, verifier, response.steps[position].answer.text)
        if score is None:
            continue
        sampled = response.steps[position]
        sampled.answer.confidence = score
        if best is None or score > best[0]:
            best = (score, position, sampled.answer.label)
        if score >= step.accept_threshold:
            break
    if best is None:
        raise execution.last_error or ModelFailed("no answer could be sampled and verified")
    score, position, label = best
    execution.answer_position = position
    chosen = response.steps[position]
    chosen.decision = common_pb2.DECISION_ACCEPT
    sampled = sum(1 for s in response.steps if s.decision in (common_pb2.DECISION_ACCEPT, common_pb2.DECISION_CONTRIBUTED))
    chosen.reason = f"verifier score {score:.3f}, the best of {sampled} answers"
    response.answer.CopyFrom(common_pb2.Answer(label=label, confidence=score, text=chosen.answer.text))
    response.outputs.extend(text_output(execution))
    return response


async def _verify(runner: StepRunner, execution: Execution, verifier: RegisteredModel, answer_text: str) -> float | None:
    """Scores one answer with the verifier and records the verification; None when the verifier failed."""
    request = execution.request
    verification = common_pb2.EscalationStep(index=-1, model=common_pb2.ModelRef(name=verifier.name), tier=verifier.tier)
    runner.announce(execution, -1, verifier)
    with TRACER.start_as_current_span(
        "inferscale.verification", attributes={telemetry.ATTR_TASK: execution.plan.task, telemetry.ATTR_MODEL: verifier.name}
    ) as span:
        try:
            verdict = await runner.text.verify(
                verifier,
                request.text.prompt,
                answer_text,
                request_id=request.request_id,
                skip_cache=request.skip_cache,
                timeout_seconds=runner.timeout(execution),
            )
        except (ModelFailed, Unavailable) as error:
            verification.decision = common_pb2.DECISION_FAILED
            verification.reason = f"verifier {verifier.name} failed: {error}"
            runner.record(execution, verification, span)
            return None
        verification.model.version = verdict.model_version
        verification.answer.CopyFrom(common_pb2.Answer(confidence=verdict.confidence))
        verification.decision = common_pb2.DECISION_ANALYZED
        verification.reason = verdict.why
        verification.cost = verdict.cost
        verification.latency_ms = verdict.latency_ms
        verification.cache_level = verdict.served_by
        verification.usage.CopyFrom(common_pb2.TokenUsage(input_tokens=verdict.input_tokens, output_tokens=verdict.output_tokens))
        runner.record(execution, verification, span)
    return verdict.confidence
