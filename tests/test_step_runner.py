"""The step runner's pure parts and the request validation, without gRPC or Triton."""

from __future__ import annotations

import pytest

from inferscale.errors import InvalidArgument, NotFound
from inferscale.v1 import common_pb2, monitor_service_pb2, orchestrator_service_pb2
from services.orchestrator.registry import RegistrySnapshot, parse_model
from services.orchestrator.step_runner import Execution, StepRunner, not_run, skipped
from services.orchestrator.strategies import STRATEGIES
from services.orchestrator.validation import validate

DIGITS = {
    "inferscale.task": "digits",
    "inferscale.tier": "1",
    "inferscale.cost": "1.0",
    "inferscale.answer_kind": "class_probabilities",
    "inferscale.confidence": "max_probability",
    "inferscale.output": "PROBS",
}
INPUT = common_pb2.InferTensor(name="X", datatype="FP32", shape=[1], raw_contents=b"\0\0\0\0")


class Events:
    """Keeps what the runner would send to the monitor."""

    def __init__(self) -> None:
        self.sent: list[monitor_service_pb2.Event] = []

    def emit(self, event: monitor_service_pb2.Event) -> None:
        self.sent.append(event)


def runner(events: Events, default_timeout_seconds: float = 5.0) -> StepRunner:
    # Recording and timeouts use neither the registry, Triton nor the model cache.
    return StepRunner(
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        events,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        default_timeout_seconds=default_timeout_seconds,
        min_gain_per_cost=0.01,
    )


def execution(strategy: int = common_pb2.STRATEGY_CASCADE, *names: str, remaining: float | None = None) -> Execution:
    plan = common_pb2.Plan(
        task="digits",
        strategy=strategy,
        steps=[common_pb2.PlanStep(model=common_pb2.ModelRef(name=name), accept_threshold=0.9) for name in names],
    )
    request = orchestrator_service_pb2.ExecuteRequest(request_id="r1", plan=plan, inputs=[INPUT])
    return Execution(request, orchestrator_service_pb2.ExecuteResponse(), lambda: remaining)


def test_every_decided_step_is_reported_but_only_those_that_ran_or_tried_reach_the_monitor() -> None:
    events = Events()
    run = execution(common_pb2.STRATEGY_CASCADE, "gone", "late", "broken", "fine")
    steps = run.plan.steps
    answered = common_pb2.EscalationStep(index=3, decision=common_pb2.DECISION_ACCEPT, cost=2.5)
    recorder = runner(events)
    for step in (
        skipped(0, steps[0]),
        not_run(1, steps[1], common_pb2.DECISION_STOPPED, "deadline"),
        not_run(2, steps[2], common_pb2.DECISION_FAILED, "model broken failed"),
        answered,
    ):
        recorder.record(run, step)
    assert [s.decision for s in run.response.steps] == [
        common_pb2.DECISION_SKIPPED,
        common_pb2.DECISION_STOPPED,
        common_pb2.DECISION_FAILED,
        common_pb2.DECISION_ACCEPT,
    ]
    assert run.response.total_cost == 2.5
    assert [(e.request_id, e.step.task, e.step.step.index) for e in events.sent] == [("r1", "digits", 2), ("r1", "digits", 3)]


def test_a_call_gets_its_share_of_the_time_left_or_the_default_without_a_deadline() -> None:
    assert runner(Events(), default_timeout_seconds=7.0).timeout(execution(remaining=None)) == 7.0
    assert runner(Events()).timeout(execution(remaining=2.0), share=0.5) == 1.0


def test_validation_refuses_a_strategy_that_no_module_runs_naming_the_field() -> None:
    registry = RegistrySnapshot([parse_model("fine", 1, True, DIGITS)])
    request = execution(common_pb2.STRATEGY_SEARCH, "fine").request
    request.plan.max_calls = 2
    assert validate(request, registry, STRATEGIES.keys()) == [registry.get("fine")]
    with pytest.raises(InvalidArgument, match="plan.strategy"):
        validate(request, registry, set(STRATEGIES) - {common_pb2.STRATEGY_SEARCH})


def test_a_step_whose_model_left_routing_is_skipped_unless_every_step_left() -> None:
    registry = RegistrySnapshot([parse_model("fine", 1, True, DIGITS)])
    assert validate(execution(common_pb2.STRATEGY_CASCADE, "gone", "fine").request, registry, STRATEGIES.keys()) == [
        None,
        registry.get("fine"),
    ]
    with pytest.raises(NotFound, match=r"plan.steps\[0\].model 'gone' is not in the registry"):
        validate(execution(common_pb2.STRATEGY_CASCADE, "gone").request, registry, STRATEGIES.keys())


def _text_registry(confidence: str = "token_probability") -> RegistrySnapshot:
    parameters = {
        "inferscale.task": "math",
        "inferscale.tier": "1",
        "inferscale.cost": "100",
        "inferscale.answer_kind": "generated_text",
        "inferscale.confidence": confidence,
        "inferscale.output": "text_output",
        "inferscale.cost_per_input_token": "1",
        "inferscale.cost_per_output_token": "10",
        "inferscale.answer_extraction": "last_number",
        "inferscale.prompt_format": "chatml",
    }
    return RegistrySnapshot([parse_model("llm", 1, True, parameters)])


def _text_request(strategy: int, temperature: float = 0.0, **plan: object) -> orchestrator_service_pb2.ExecuteRequest:
    return orchestrator_service_pb2.ExecuteRequest(
        request_id="r",
        plan=common_pb2.Plan(strategy=strategy, task="math", steps=[common_pb2.PlanStep(model=common_pb2.ModelRef(name="llm"), tier=1)], **plan),
        text=common_pb2.TextPrompt(prompt="2 + 2?", sampling=common_pb2.SamplingLimits(max_tokens=8, temperature=temperature)),
    )


@pytest.mark.parametrize(
    ("request_", "registry", "fault"),
    [
        (_text_request(common_pb2.STRATEGY_ENSEMBLE), _text_registry(), "cannot run STRATEGY_ENSEMBLE"),
        (_text_request(common_pb2.STRATEGY_SELF_CONSISTENCY, max_calls=3), _text_registry(), "temperature must be above 0"),
        # A verifier that is not there is refused before the generation it would score.
        (_text_request(common_pb2.STRATEGY_BEST_OF_N, 0.7, max_calls=2, verifier_model="gone"), _text_registry(), "verifier_model 'gone' is not"),
        (_text_request(common_pb2.STRATEGY_CASCADE, verifier_model="gone"), _text_registry("verifier"), "verifier_model 'gone'"),
    ],
    ids=["ensemble", "greedy_self_consistency", "best_of_n_without_verifier", "verifier_confidence_without_verifier"],
)
def test_a_text_plan_that_cannot_run_is_refused_before_any_generation(request_, registry, fault: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgument, match=fault):
        validate(request_, registry, STRATEGIES.keys())
