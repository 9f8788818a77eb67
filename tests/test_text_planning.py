"""The router's pure logic for text tasks: the prompt's bounds, plans of the text strategies, the
sampling the orchestrator gets, and what the caches may keep and how they key it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from inferscale.errors import InvalidArgument, NotFound
from inferscale.limits import (
    MAX_CONTEXT_TURNS,
    MAX_GENERATED_TOKENS,
    MAX_PROMPT_CHARS,
    MAX_TEXT_CHARS,
)
from inferscale.settings import SettingError
from inferscale.tensors import bytes_elements, from_numpy
from inferscale.v1 import common_pb2, router_service_pb2
from services.router.config import RouterConfig
from services.router.planning import build_plan, result_key, validate_request
from services.router.semantic import EMBEDDED_TEXT_INPUT, embedding_source, semantic_namespace
from services.router.text_task import TextDefaults, answer_is_sampled, resolved_text

SC = common_pb2.STRATEGY_SELF_CONSISTENCY
BEST_OF_N = common_pb2.STRATEGY_BEST_OF_N


def text_model(name: str, tier: int, cost: float, *, confidence: str = "token_probability", version: int = 1) -> common_pb2.ModelInfo:
    return common_pb2.ModelInfo(
        model=common_pb2.ModelRef(name=name, version=version),
        task="math",
        tier=tier,
        cost=cost,
        answer_kind="generated_text",
        confidence_method=confidence,
        semantic_input="text_input",
        embedding_model="text_embedding",
        semantic_threshold=0.97,
        ready=True,
    )


SMALL = text_model("small", 1, 100.0)
LARGE = text_model("large", 2, 300.0)
MATH = [LARGE, SMALL]
DIGITS = [
    common_pb2.ModelInfo(
        model=common_pb2.ModelRef(name="digits", version=1), task="digits", tier=1, cost=1.0, answer_kind="class_probabilities", ready=True
    )
]
IMAGE = from_numpy("IMAGE", np.zeros((1, 64), np.float32))


def prompt(text: str = "What is 2 + 3?", **fields: Any) -> common_pb2.TextPrompt:
    return common_pb2.TextPrompt(prompt=text, **fields)


def ask(text: common_pb2.TextPrompt | None = None, **fields: Any) -> router_service_pb2.InferRequest:
    return router_service_pb2.InferRequest(task="math", text=text if text is not None else prompt(), **fields)


def turns(count: int, content: str = "", role: str = "user") -> list[common_pb2.ChatMessage]:
    return [common_pb2.ChatMessage(role=role, content=content) for _ in range(count)]


def sampling(max_tokens: int = 0, temperature: float | None = None) -> common_pb2.SamplingLimits:
    limits = common_pb2.SamplingLimits(max_tokens=max_tokens)
    if temperature is not None:
        limits.temperature = temperature
    return limits


@pytest.mark.parametrize(
    ("request_", "named"),
    [
        (ask(prompt("")), "text.prompt is required"),
        (ask(prompt(" \n\t")), "text.prompt is required"),
        (ask(prompt("x" * (MAX_PROMPT_CHARS + 1))), "text.prompt has 16385 characters, more than 16384"),
        (ask(prompt(context=turns(MAX_CONTEXT_TURNS + 1))), "text.context holds 33 turns, more than the 32 allowed"),
        (ask(prompt(context=turns(1, role="robot"))), r"text.context\[0\].role 'robot' is not one of system, user, assistant"),
        (ask(prompt(context=turns(1, role=""))), r"text.context\[0\].role '' is not one"),
        (ask(prompt(context=turns(1, role="r" * 100_000))), r"text.context\[0\].role 'r{32}' is not one"),
        (
            ask(prompt("x" * MAX_PROMPT_CHARS, context=turns(4, "y" * MAX_PROMPT_CHARS))),
            r"text.prompt and text.context hold more than 65536 characters in all \(past it at text.context\[3\]\)",
        ),
        (ask(prompt(sampling=sampling(max_tokens=MAX_GENERATED_TOKENS + 1))), r"text.sampling.max_tokens 2049 is outside \[0, 2048\]"),
        (ask(prompt(sampling=sampling(max_tokens=-1))), r"text.sampling.max_tokens -1 is outside"),
        (ask(prompt(sampling=sampling(temperature=2.5))), r"text.sampling.temperature 2.5 is outside \[0, 2\]"),
        (ask(prompt(sampling=sampling(temperature=-0.1))), "text.sampling.temperature -0.1 is outside"),
        (ask(prompt(sampling=sampling(temperature=float("nan")))), "text.sampling.temperature nan is outside"),
        (ask(prompt(sampling=sampling(temperature=float("inf")))), "text.sampling.temperature inf is outside"),
        (ask(inputs=[IMAGE]), "text and inputs are exclusive"),
        (ask(max_calls=4), "max_calls may be set only with strategy STRATEGY_SEARCH, STRATEGY_SELF_CONSISTENCY or"),
        (ask(strategy=common_pb2.STRATEGY_SEARCH, model_name="small"), "model_name may be set only with strategy STRATEGY_SINGLE,"),
        (ask(strategy=SC, max_calls=65), r"max_calls 65 is outside \[0, 64\]"),
    ],
    ids=[
        "empty_prompt",
        "blank_prompt",
        "long_prompt",
        "many_turns",
        "unknown_role",
        "no_role",
        "huge_role_echoed_in_part",
        "long_text",
        "many_tokens",
        "negative_tokens",
        "hot",
        "negative_temperature",
        "nan_temperature",
        "infinite_temperature",
        "text_and_inputs",
        "calls_of_a_cascade",
        "model_of_a_search",
        "too_many_samples",
    ],
)
def test_a_malformed_text_request_is_refused_naming_the_field(request_: router_service_pb2.InferRequest, named: str) -> None:
    with pytest.raises(InvalidArgument, match=named):
        validate_request(request_)


def test_a_prompt_at_every_bound_is_accepted() -> None:
    # The prompt's own bound, and 32 turns that bring the whole text to exactly its bound.
    share = (MAX_TEXT_CHARS - MAX_PROMPT_CHARS) // MAX_CONTEXT_TURNS
    at_bounds = prompt(
        "x" * MAX_PROMPT_CHARS,
        context=turns(MAX_CONTEXT_TURNS, "y" * share, role="assistant"),
        sampling=sampling(max_tokens=MAX_GENERATED_TOKENS, temperature=2.0),
    )
    assert MAX_PROMPT_CHARS + MAX_CONTEXT_TURNS * share == MAX_TEXT_CHARS
    validate_request(ask(at_bounds))
    validate_request(ask(prompt(sampling=sampling(temperature=0.0))))
    validate_request(ask(strategy=SC, model_name="small", max_calls=64))
    validate_request(ask(strategy=BEST_OF_N, max_calls=1))


def test_the_turns_are_counted_before_any_is_read() -> None:
    # A hundred thousand turns, each malformed: the count refuses them before the first role is read.
    hostile = ask(prompt(context=turns(100_000, role="robot")))
    with pytest.raises(InvalidArgument, match="text.context holds 100000 turns"):
        validate_request(hostile)


@pytest.mark.parametrize(
    ("request_", "models", "named"),
    [
        (router_service_pb2.InferRequest(task="digits", text=prompt()), DIGITS, "task 'digits' answers class_probabilities: send inputs"),
        (router_service_pb2.InferRequest(task="math", inputs=[IMAGE]), MATH, "task 'math' generates text: send its prompt in text"),
        (
            router_service_pb2.InferRequest(task="digits", inputs=[IMAGE], strategy=SC),
            DIGITS,
            "strategy STRATEGY_SELF_CONSISTENCY is for tasks that generate text, and task 'digits' does not",
        ),
        (
            router_service_pb2.InferRequest(task="digits", inputs=[IMAGE], strategy=BEST_OF_N),
            DIGITS,
            "strategy STRATEGY_BEST_OF_N is for tasks",
        ),
    ],
    ids=["text_to_classifier", "inputs_to_text_task", "self_consistency_without_text", "best_of_n_without_text"],
)
def test_a_request_that_does_not_fit_its_tasks_answer_kind_is_refused(
    request_: router_service_pb2.InferRequest, models: list[common_pb2.ModelInfo], named: str
) -> None:
    validate_request(request_)  # well formed: only the task's models tell
    with pytest.raises(InvalidArgument, match=named):
        build_plan(request_, models, 0.9)


def test_self_consistency_samples_the_highest_tier_or_the_named_model_up_to_its_calls() -> None:
    plan = build_plan(ask(strategy=SC), MATH, 0.9, default_max_calls=8)
    assert (plan.strategy, [s.model.name for s in plan.steps], plan.max_calls) == (SC, ["large"], 8)
    named = build_plan(ask(strategy=SC, model_name="small", max_calls=5), MATH, 0.9)
    assert ([s.model.name for s in named.steps], named.max_calls) == (["small"], 5)
    with pytest.raises(NotFound, match="model_name 'nope' is not a routable model of task 'math'"):
        build_plan(ask(strategy=SC, model_name="nope"), MATH, 0.9)


def test_best_of_n_spreads_over_every_text_model_judged_by_the_highest_tier_or_the_configured_verifier() -> None:
    plan = build_plan(ask(strategy=BEST_OF_N), MATH, 0.9, default_max_calls=6)
    assert [s.model.name for s in plan.steps] == ["small", "large"]
    assert (plan.max_calls, plan.verifier_model) == (6, "large")
    configured = build_plan(ask(strategy=BEST_OF_N, max_calls=3), MATH, 0.9, verifier_model="judge")
    assert (configured.max_calls, configured.verifier_model) == (3, "judge")


def test_best_of_n_samples_the_named_model_alone_and_refuses_one_the_task_lacks() -> None:
    validate_request(ask(strategy=BEST_OF_N, model_name="small", max_calls=4))
    named = build_plan(ask(strategy=BEST_OF_N, model_name="small", max_calls=4), MATH, 0.9)
    assert ([s.model.name for s in named.steps], named.max_calls, named.verifier_model) == (["small"], 4, "large")
    with pytest.raises(NotFound, match="model_name 'nope' is not a routable model of task 'math'"):
        build_plan(ask(strategy=BEST_OF_N, model_name="nope"), MATH, 0.9)


@pytest.mark.parametrize("strategy", [SC, BEST_OF_N])
def test_the_model_named_to_sample_must_generate_text(strategy: int) -> None:
    # A task may hold a text model beside a classifier; only the text model can be sampled.
    classifier = common_pb2.ModelInfo(
        model=common_pb2.ModelRef(name="judge", version=1), task="math", tier=3, cost=1.0, answer_kind="class_probabilities", ready=True
    )
    with pytest.raises(InvalidArgument, match="model_name 'judge' answers class_probabilities: .* samples a model that generates text"):
        build_plan(ask(strategy=strategy, model_name="judge"), [*MATH, classifier], 0.9)


def test_a_cascade_gets_a_verifier_only_when_a_step_is_judged_by_one() -> None:
    assert build_plan(ask(), MATH, 0.9).verifier_model == ""
    judged = [text_model("small", 1, 100.0, confidence="verifier"), LARGE]
    plan = build_plan(ask(), judged, 0.9)
    assert (plan.strategy, plan.verifier_model, plan.max_calls) == (common_pb2.STRATEGY_CASCADE, "large", 0)


@pytest.mark.parametrize(
    ("strategy", "temperature"),
    [
        (common_pb2.STRATEGY_SINGLE, 0.0),
        (common_pb2.STRATEGY_CASCADE, 0.0),
        (common_pb2.STRATEGY_UNSPECIFIED, 0.0),
        (common_pb2.STRATEGY_REFINEMENT, 0.0),
        (SC, 0.6),
        (BEST_OF_N, 0.6),
        (common_pb2.STRATEGY_SEARCH, 0.6),
    ],
)
def test_an_unset_temperature_is_greedy_except_for_the_sampling_strategies(strategy: int, temperature: float) -> None:
    resolved = resolved_text(prompt(), strategy, TextDefaults(max_tokens=100, temperature=0.6))
    assert resolved.sampling.HasField("temperature")
    assert (resolved.sampling.max_tokens, resolved.sampling.temperature) == (100, temperature)


def test_the_requests_own_sampling_is_kept_and_the_request_itself_is_left_as_sent() -> None:
    asked = prompt(sampling=sampling(max_tokens=12, temperature=0.0))
    resolved = resolved_text(asked, SC, TextDefaults(max_tokens=100, temperature=0.6))
    assert (resolved.prompt, resolved.sampling.max_tokens, resolved.sampling.temperature) == (asked.prompt, 12, 0.0)
    unset = prompt()
    resolved_text(unset, SC, TextDefaults())
    assert unset.sampling.max_tokens == 0 and not unset.sampling.HasField("temperature")


def test_only_greedy_answers_of_greedy_plans_count_as_reproducible() -> None:
    defaults = TextDefaults()
    greedy = build_plan(ask(), MATH, 0.9)
    assert not answer_is_sampled(greedy, resolved_text(prompt(), greedy.strategy, defaults), MATH)
    hot = resolved_text(prompt(sampling=sampling(temperature=0.3)), greedy.strategy, defaults)
    assert answer_is_sampled(greedy, hot, MATH)
    voted = build_plan(ask(strategy=SC), MATH, 0.9)
    cold_votes = resolved_text(prompt(sampling=sampling(temperature=0.0)), SC, defaults)
    assert answer_is_sampled(voted, cold_votes, MATH)  # a sampling strategy, whatever its temperature
    agreeing = [text_model("small", 1, 100.0, confidence="agreement"), LARGE]
    cascade = build_plan(ask(), agreeing, 0.9)
    assert answer_is_sampled(cascade, resolved_text(prompt(), cascade.strategy, defaults), agreeing)


def test_the_result_key_covers_the_prompt_its_turns_its_sampling_and_the_verifiers_version() -> None:
    plan = build_plan(ask(strategy=BEST_OF_N), MATH, 0.9)
    judge = common_pb2.ModelRef(name="large", version=1)
    base = prompt(context=turns(1, "Answer with a number.", role="system"), sampling=sampling(24, 0.0))
    key = result_key(plan, [], [judge], base)
    assert key == result_key(plan, [], [judge], prompt(context=turns(1, "Answer with a number.", role="system"), sampling=sampling(24, 0.0)))
    variants = [
        prompt("What is 2 + 4?", context=base.context, sampling=base.sampling),
        prompt(context=turns(1, "Answer in words.", role="system"), sampling=base.sampling),
        prompt(context=base.context, sampling=sampling(25, 0.0)),
        prompt(context=base.context, sampling=sampling(24, 0.5)),
    ]
    keys = {result_key(plan, [], [judge], variant) for variant in variants}
    keys.add(result_key(plan, [], [common_pb2.ModelRef(name="large", version=2)], base))
    keys.add(result_key(plan, [], [judge]))
    assert key not in keys and len(keys) == len(variants) + 2


def test_a_text_task_embeds_the_prompt_alone_and_keeps_neighbours_to_the_same_turns_and_limits() -> None:
    asked = ask(prompt("What is 2 + 3?", context=turns(2, "Some earlier turn.")))
    source = embedding_source(asked, MATH)
    assert source is not None and (source.embedding_model, source.threshold) == ("text_embedding", 0.97)
    assert source.tensor is not None and source.tensor.name == EMBEDDED_TEXT_INPUT
    assert bytes_elements(source.tensor, "TEXT") == [b"What is 2 + 3?"]
    plan = build_plan(asked, MATH, 0.9)
    base = resolved_text(asked.text, plan.strategy, TextDefaults())
    reworded = resolved_text(prompt("What's 2 plus 3?", context=asked.text.context), plan.strategy, TextDefaults())
    assert semantic_namespace(plan, 384, text=base) == semantic_namespace(plan, 384, text=reworded)
    # The numbers are part of the namespace: an embedding barely tells them apart, the answer does.
    other_numbers = resolved_text(prompt("What is 7 + 1?", context=asked.text.context), plan.strategy, TextDefaults())
    assert semantic_namespace(plan, 384, text=base) != semantic_namespace(plan, 384, text=other_numbers)
    other_turns = resolved_text(prompt("What is 2 + 3?"), plan.strategy, TextDefaults())
    longer = resolved_text(prompt("What is 2 + 3?", context=asked.text.context, sampling=sampling(9)), plan.strategy, TextDefaults())
    assert len({semantic_namespace(plan, 384, text=t) for t in (base, other_turns, longer)}) == 3


def test_the_text_settings_are_read_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERSCALE_TEXT_MAX_TOKENS", "64")
    monkeypatch.setenv("INFERSCALE_TEXT_TEMPERATURE", "1.1")
    monkeypatch.setenv("INFERSCALE_TEXT_VERIFIER_MODEL", "judge")
    assert RouterConfig.from_env().text == TextDefaults(max_tokens=64, temperature=1.1, verifier_model="judge")
    for name, value in (("INFERSCALE_TEXT_MAX_TOKENS", "2049"), ("INFERSCALE_TEXT_MAX_TOKENS", "0"), ("INFERSCALE_TEXT_TEMPERATURE", "2.5")):
        with monkeypatch.context() as bad:
            bad.setenv(name, value)
            with pytest.raises(SettingError, match=name):
                RouterConfig.from_env()
    for name in ("INFERSCALE_TEXT_MAX_TOKENS", "INFERSCALE_TEXT_TEMPERATURE", "INFERSCALE_TEXT_VERIFIER_MODEL"):
        monkeypatch.delenv(name)
    assert RouterConfig.from_env().text == TextDefaults(max_tokens=256, temperature=0.7, verifier_model="")


@pytest.mark.parametrize(
    ("fields", "fault"),
    [
        ({"strategy": common_pb2.STRATEGY_ENSEMBLE}, "does not combine text answers"),
        ({"strategy": common_pb2.STRATEGY_EXPERT}, "does not combine text answers"),
        ({"analyze_complexity": True}, "analyze_complexity needs input tensors"),
    ],
)
def test_strategies_that_combine_tensors_are_refused_for_text(fields: dict, fault: str) -> None:
    with pytest.raises(InvalidArgument, match=fault):
        build_plan(ask(**fields), MATH, 0.9)


def test_the_sampling_strategies_refuse_greedy_decoding() -> None:
    for strategy in (SC, BEST_OF_N):
        with pytest.raises(InvalidArgument, match="temperature must be above 0"):
            build_plan(ask(prompt(sampling=sampling(8, 0.0)), strategy=strategy), MATH, 0.9)


def test_a_text_refinement_plan_drafts_with_the_small_model_and_refines_with_the_large() -> None:
    plan = build_plan(ask(strategy=common_pb2.STRATEGY_REFINEMENT), MATH, 0.9)
    assert [step.model.name for step in plan.steps] == ["small", "large"]
