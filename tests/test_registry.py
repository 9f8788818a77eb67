"""The registry's pure parsing of config.pbtxt parameters, and its routable view."""

from __future__ import annotations

import pytest

from services.orchestrator.registry import (
    ROLE_COMPLEXITY,
    ROLE_EMBEDDING,
    RegistrySnapshot,
    parse_model,
)

GOOD = {
    "inferscale.task": "digits",
    "inferscale.tier": "2",
    "inferscale.cost": "4.5",
    "inferscale.answer_kind": "class_probabilities",
    "inferscale.confidence": "max_probability",
    "inferscale.output": "PROBS",
}


def test_a_complete_config_is_routable() -> None:
    model = parse_model("mid", 1, True, GOOD)
    assert model.routable
    assert (model.task, model.tier, model.cost, model.output_name) == ("digits", 2, 4.5, "PROBS")


def test_missing_parameters_are_named_and_the_model_left_out() -> None:
    model = parse_model("bare", 1, True, {"inferscale.task": "digits"})
    assert not model.routable
    assert "inferscale.tier" in model.problem and "inferscale.output" in model.problem


def test_malformed_numbers_are_reported() -> None:
    model = parse_model("odd", 1, True, {**GOOD, "inferscale.tier": "two"})
    assert not model.routable
    assert "'two'" in model.problem


def test_unknown_answer_kind_is_reported() -> None:
    model = parse_model("odd", 1, True, {**GOOD, "inferscale.answer_kind": "poetry"})
    assert "'poetry'" in model.problem


def test_a_model_that_is_not_ready_is_not_routable() -> None:
    assert not parse_model("mid", 1, False, GOOD).routable


def test_for_task_orders_routable_models_by_tier() -> None:
    snapshot = RegistrySnapshot(
        [
            parse_model("heavy", 1, True, {**GOOD, "inferscale.tier": "3"}),
            parse_model("cheap", 1, True, {**GOOD, "inferscale.tier": "1"}),
            parse_model("broken", 1, True, {}),
            parse_model("other", 1, True, {**GOOD, "inferscale.task": "text"}),
        ]
    )
    assert [m.name for m in snapshot.for_task("digits")] == ["cheap", "heavy"]
    assert snapshot.get("broken") is not None


def test_a_refinement_input_is_read_when_declared() -> None:
    assert parse_model("mid", 1, True, {**GOOD, "inferscale.refinement_input": "PRIOR"}).refinement_input == "PRIOR"
    assert parse_model("mid", 1, True, GOOD).refinement_input == ""


def test_a_semantic_cache_declaration_is_read() -> None:
    model = parse_model(
        "intent", 1, True,
        {**GOOD, "inferscale.semantic_input": "TEXT", "inferscale.embedding_model": "embedder", "inferscale.semantic_threshold": "0.93"},
    )
    assert model.routable
    assert (model.semantic_input, model.embedding_model, model.semantic_threshold) == ("TEXT", "embedder", 0.93)
    bad = parse_model("intent", 1, True, {**GOOD, "inferscale.semantic_threshold": "1.5"})
    assert not bad.routable and "inferscale.semantic_threshold" in bad.problem


def test_an_embedding_model_embeds_but_is_never_routed_to() -> None:
    model = parse_model("embedder", 1, True, {"inferscale.role": "embedding", "inferscale.cost": "3"})
    assert model.serves_as(ROLE_EMBEDDING) and not model.routable
    assert (model.cost, model.output_name) == (3.0, "EMBEDDING")
    assert not parse_model("embedder", 1, True, {"inferscale.role": "embedding"}).serves_as(ROLE_EMBEDDING)
    assert "'reranker'" in parse_model("odd", 1, True, {"inferscale.role": "reranker"}).problem


def test_a_complexity_model_scores_but_is_never_routed_to_and_experts_declare_their_band() -> None:
    scorer = parse_model("scorer", 1, True, {"inferscale.role": "complexity", "inferscale.cost": "0.5"})
    assert scorer.serves_as(ROLE_COMPLEXITY) and not scorer.serves_as(ROLE_EMBEDDING) and not scorer.routable
    assert scorer.output_name == "COMPLEXITY"
    expert = parse_model(
        "cheap", 1, True, {**GOOD, "inferscale.complexity_model": "scorer", "inferscale.expert_complexity": "0-0.25"}
    )
    assert expert.routable and (expert.complexity_model, expert.expert_low, expert.expert_high) == ("scorer", 0.0, 0.25)
    for band in ("0.3", "0.5-0.2", "a-b", "0-1.5"):
        bad = parse_model("cheap", 1, True, {**GOOD, "inferscale.expert_complexity": band})
        assert not bad.routable and "inferscale.expert_complexity must be 'low-high'" in bad.problem


def test_a_grid_answer_reads_its_confidence_from_the_declared_score_output() -> None:
    grid = {**GOOD, "inferscale.answer_kind": "grid", "inferscale.confidence": "score_output", "inferscale.score_output": "SCORE"}
    model = parse_model("solver", 1, True, grid)
    assert model.routable and (model.answer_kind, model.score_output) == ("grid", "SCORE")
    unscored = parse_model("solver", 1, True, {**grid, "inferscale.score_output": ""})
    assert not unscored.routable and "needs inferscale.score_output" in unscored.problem
    mismatched = parse_model("solver", 1, True, {**grid, "inferscale.confidence": "max_probability"})
    assert not mismatched.routable and "of answer kind 'grid' must be 'score_output'" in mismatched.problem


def _text_parameters(**overrides: str) -> dict[str, str]:
    parameters = {
        "inferscale.task": "math",
        "inferscale.tier": "1",
        "inferscale.cost": "100",
        "inferscale.answer_kind": "generated_text",
        "inferscale.confidence": "token_probability",
        "inferscale.output": "text_output",
        "inferscale.cost_per_input_token": "1.5",
        "inferscale.cost_per_output_token": "12",
        "inferscale.answer_extraction": "last_number",
        "inferscale.prompt_format": "chatml",
    }
    parameters.update(overrides)
    return parameters


def test_a_text_model_declares_its_token_costs_extraction_and_prompt_format() -> None:
    model = parse_model("llm", 1, True, _text_parameters())
    assert model.routable and model.generates_text
    assert (model.cost_per_input_token, model.cost_per_output_token) == (1.5, 12.0)
    assert (model.answer_extraction, model.prompt_format, model.agreement_samples) == ("last_number", "chatml", 3)
    assert parse_model("llm", 1, True, _text_parameters(**{"inferscale.confidence": "derivation_probability"})).routable
    assert model.answer_check == ""
    checked = parse_model("llm", 1, True, _text_parameters(**{"inferscale.answer_check": "arithmetic"}))
    assert checked.routable and checked.answer_check == "arithmetic"


@pytest.mark.parametrize(
    ("override", "fault"),
    [
        ({"inferscale.cost_per_output_token": "-1"}, "cost_per_output_token"),
        ({"inferscale.cost_per_input_token": "nan"}, "cost_per_input_token"),
        ({"inferscale.answer_extraction": "regex"}, "answer_extraction"),
        ({"inferscale.prompt_format": "llama3"}, "prompt_format"),
        ({"inferscale.agreement_samples": "1"}, "agreement_samples"),
        ({"inferscale.confidence": "max_probability"}, "token_probability"),
        ({"inferscale.confidence": "derivation_probability", "inferscale.answer_extraction": "first_line"}, "needs inferscale.answer_extraction 'last_number'"),
        ({"inferscale.answer_check": "spelling"}, "answer_check"),
        ({"inferscale.answer_check": "arithmetic", "inferscale.answer_extraction": "whole_text"}, "needs inferscale.answer_extraction 'last_number'"),
    ],
)
def test_a_text_model_with_a_malformed_declaration_is_left_out_naming_the_fault(override: dict[str, str], fault: str) -> None:
    model = parse_model("llm", 1, True, _text_parameters(**override))
    assert not model.routable and fault in model.problem
