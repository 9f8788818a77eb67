"""The model registry: what each model in Triton's repository declares about itself, and which are routable.

Pure logic: it parses the ``parameters`` of a model's config.pbtxt into a RegisteredModel and
keeps a snapshot; reading Triton is the caller's business.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# The config.pbtxt parameters every routable model declares.
PARAM_TASK = "inferscale.task"
PARAM_TIER = "inferscale.tier"
PARAM_COST = "inferscale.cost"
PARAM_ANSWER_KIND = "inferscale.answer_kind"
PARAM_CONFIDENCE = "inferscale.confidence"
PARAM_OUTPUT = "inferscale.output"
# Optional: the input through which the model receives an earlier model's answer to refine.
PARAM_REFINEMENT_INPUT = "inferscale.refinement_input"
# Optional: the input (INT64, shape [1]) through which the model takes a seed and answers with a
# fresh sample; adaptive search asks such a model for new answers more than once.
PARAM_SAMPLING_INPUT = "inferscale.sampling_input"
# Optional: the task's complexity model (see ROLE_COMPLEXITY), and the band of its scores,
# "low-high", for which this model is the task's expert.
PARAM_COMPLEXITY_MODEL = "inferscale.complexity_model"
PARAM_EXPERT_COMPLEXITY = "inferscale.expert_complexity"
# Optional: the semantic cache of the model's task: the input whose embedding keys it, the
# embedding model that embeds that input (none: its FP32 values are the embedding), and the cosine
# similarity a neighbour must reach.
PARAM_SEMANTIC_INPUT = "inferscale.semantic_input"
PARAM_EMBEDDING_MODEL = "inferscale.embedding_model"
PARAM_SEMANTIC_THRESHOLD = "inferscale.semantic_threshold"
# "embedding" marks a model that turns inputs into embeddings for the semantic cache rather than
# answering a task; it declares only its cost and, optionally, its output.
# "complexity" marks one that scores how hard an input is, in [0, 1] (the chance that the task's
# cheapest tier gets it wrong), for complexity analysis and experts; it declares the same.
PARAM_ROLE = "inferscale.role"
ROLE_EMBEDDING = "embedding"
ROLE_COMPLEXITY = "complexity"
DEFAULT_OUTPUTS = {ROLE_EMBEDDING: "EMBEDDING", ROLE_COMPLEXITY: "COMPLEXITY"}
REQUIRED_PARAMETERS = (PARAM_TASK, PARAM_TIER, PARAM_COST, PARAM_ANSWER_KIND, PARAM_CONFIDENCE, PARAM_OUTPUT)

# Each answer kind and how its confidence is read: class probabilities by their maximum; a grid
# (an ARC-style output: BYTES [1] holding the grid as JSON) from the score output the config
# names in inferscale.score_output (FP32 [1] in [0, 1]).
CLASS_PROBABILITIES = "class_probabilities"
GRID = "grid"
# Generated text (a model of Triton's vLLM-backend contract, decoupled): its confidence is the
# answer's token probabilities, those of every number of its derivation (a computed last
# number), the agreement of several samples on the extracted answer, or a verifier model's score
# (docs/generative.md).
GENERATED_TEXT = "generated_text"
TOKEN_PROBABILITY = "token_probability"
DERIVATION_PROBABILITY = "derivation_probability"
AGREEMENT = "agreement"
VERIFIER = "verifier"
CONFIDENCES_OF = {
    CLASS_PROBABILITIES: ("max_probability",),
    GRID: ("score_output",),
    GENERATED_TEXT: (TOKEN_PROBABILITY, DERIVATION_PROBABILITY, AGREEMENT, VERIFIER),
}
ANSWER_KINDS = frozenset(CONFIDENCES_OF)
PARAM_SCORE_OUTPUT = "inferscale.score_output"
# Generated text: the compute units of a prompt token and of a generated token, how the final
# answer is extracted from the text, how chat turns are rendered into text_input, and how many
# samples an "agreement" confidence draws.
PARAM_COST_PER_INPUT_TOKEN = "inferscale.cost_per_input_token"
PARAM_COST_PER_OUTPUT_TOKEN = "inferscale.cost_per_output_token"
PARAM_ANSWER_EXTRACTION = "inferscale.answer_extraction"
PARAM_PROMPT_FORMAT = "inferscale.prompt_format"
PARAM_AGREEMENT_SAMPLES = "inferscale.agreement_samples"
# A check of the text a model writes, run on every answer before it counts (optional): "arithmetic"
# recomputes the equations of a derivation (services/orchestrator/text/arithmetic.py). A text
# that fails it has confidence 0 and votes for nothing while another sample's text holds.
PARAM_ANSWER_CHECK = "inferscale.answer_check"
ARITHMETIC_CHECK = "arithmetic"
ANSWER_CHECKS = ("", ARITHMETIC_CHECK)
LAST_NUMBER = "last_number"
ANSWER_EXTRACTIONS = (LAST_NUMBER, "first_line", "whole_text")
PROMPT_FORMATS = ("chatml", "plain")
DEFAULT_AGREEMENT_SAMPLES = 3
MAX_AGREEMENT_SAMPLES = 16


@dataclass(frozen=True)
class RegisteredModel:
    """A model as the registry knows it. ``problem`` is empty for a model that can be routed to."""

    name: str
    version: int
    ready: bool
    task: str = ""
    tier: int = 0
    cost: float = 0.0
    answer_kind: str = ""
    confidence_method: str = ""
    output_name: str = ""
    refinement_input: str = ""
    sampling_input: str = ""
    score_output: str = ""
    complexity_model: str = ""
    # The band [expert_low, expert_high) of complexity scores this model is the expert for;
    # expert_high 0: no expert.
    expert_low: float = 0.0
    expert_high: float = 0.0
    semantic_input: str = ""
    embedding_model: str = ""
    semantic_threshold: float = 0.0
    # Generated text only (answer kind GENERATED_TEXT).
    cost_per_input_token: float = 0.0
    cost_per_output_token: float = 0.0
    answer_extraction: str = ""
    prompt_format: str = ""
    agreement_samples: int = 0
    answer_check: str = ""
    role: str = ""
    problem: str = ""

    @property
    def samples(self) -> bool:
        """Whether the model answers a fresh sample when given a seed: one with a sampling input, or any text model."""
        return bool(self.sampling_input) or self.generates_text

    @property
    def refines(self) -> bool:
        """Whether the model can refine an earlier answer: one with a refinement input, or any text model."""
        return bool(self.refinement_input) or self.generates_text

    @property
    def generates_text(self) -> bool:
        """Whether the model generates text (Triton's vLLM-backend contract, reached by streaming)."""
        return self.answer_kind == GENERATED_TEXT

    @property
    def routable(self) -> bool:
        """Whether plans may use the model: a task model, ready, and its config declares all the registry needs."""
        return self.ready and not self.problem and not self.role

    def serves_as(self, role: str) -> bool:
        """Whether the model is ready for the role: ROLE_EMBEDDING (the semantic cache's embeddings)
        or ROLE_COMPLEXITY (complexity analysis)."""
        return self.ready and not self.problem and self.role == role


def parse_expert_band(text: str) -> tuple[float, float]:
    """Reads "low-high" (0 <= low < high <= 1); raises ValueError saying what is wrong."""
    low_text, separator, high_text = text.partition("-")
    try:
        low, high = float(low_text), float(high_text)
    except ValueError:
        low, high = -1.0, -1.0
    if not separator or not 0.0 <= low < high <= 1.0:
        raise ValueError(f"{PARAM_EXPERT_COMPLEXITY} must be 'low-high' with 0 <= low < high <= 1, got {text!r}")
    return low, high


def _parse_helper_model(name: str, version: int, ready: bool, role: str, parameters: Mapping[str, str]) -> RegisteredModel:
    try:
        cost = float(parameters.get(PARAM_COST, ""))
    except ValueError:
        cost = 0.0
    problem = "" if cost > 0 else f"{PARAM_COST} must be a positive number, got {parameters.get(PARAM_COST, '')!r}"
    return RegisteredModel(
        name,
        version,
        ready,
        cost=cost,
        output_name=parameters.get(PARAM_OUTPUT, "").strip() or DEFAULT_OUTPUTS[role],
        role=role,
        problem=problem,
    )


def parse_model(name: str, version: int, ready: bool, parameters: Mapping[str, str]) -> RegisteredModel:
    """Reads a model's declared metadata; a missing or malformed parameter becomes its ``problem``."""
    role = parameters.get(PARAM_ROLE, "").strip()
    if role in DEFAULT_OUTPUTS:
        return _parse_helper_model(name, version, ready, role, parameters)
    if role:
        return RegisteredModel(name, version, ready, role=role, problem=f"{PARAM_ROLE} {role!r} is not one of {sorted(DEFAULT_OUTPUTS)}")
    missing = [key for key in REQUIRED_PARAMETERS if not parameters.get(key, "").strip()]
    if missing:
        return RegisteredModel(
            name, version, ready, problem=f"config.pbtxt lacks parameters {', '.join(missing)}"
        )
    try:
        tier = int(parameters[PARAM_TIER])
        cost = float(parameters[PARAM_COST])
    except ValueError:
        return RegisteredModel(
            name,
            version,
            ready,
            problem=f"{PARAM_TIER} must be an integer and {PARAM_COST} a number, got "
            f"{parameters[PARAM_TIER]!r} and {parameters[PARAM_COST]!r}",
        )
    problem = ""
    if tier < 1:
        problem = f"{PARAM_TIER} must be at least 1, got {tier}"
    elif not cost > 0:
        problem = f"{PARAM_COST} must be positive, got {cost}"
    elif parameters[PARAM_ANSWER_KIND] not in ANSWER_KINDS:
        problem = f"{PARAM_ANSWER_KIND} {parameters[PARAM_ANSWER_KIND]!r} is not one of {sorted(ANSWER_KINDS)}"
    elif parameters[PARAM_CONFIDENCE] not in CONFIDENCES_OF[parameters[PARAM_ANSWER_KIND]]:
        kind = parameters[PARAM_ANSWER_KIND]
        allowed = " or ".join(repr(method) for method in CONFIDENCES_OF[kind])
        problem = f"{PARAM_CONFIDENCE} of answer kind {kind!r} must be {allowed}, not {parameters[PARAM_CONFIDENCE]!r}"
    elif parameters[PARAM_ANSWER_KIND] == GRID and not parameters.get(PARAM_SCORE_OUTPUT, "").strip():
        problem = f"answer kind 'grid' needs {PARAM_SCORE_OUTPUT}, the output holding the answer's score"
    text = _TextSettings()
    if parameters[PARAM_ANSWER_KIND] == GENERATED_TEXT:
        try:
            text = _parse_text_settings(parameters)
        except ValueError as error:
            problem = problem or str(error)
        if parameters[PARAM_CONFIDENCE] == DERIVATION_PROBABILITY and text.answer_extraction != LAST_NUMBER:
            problem = problem or f"confidence {DERIVATION_PROBABILITY!r} reads the numbers of a derivation: it needs {PARAM_ANSWER_EXTRACTION} 'last_number'"
    semantic_threshold = 0.0
    if parameters.get(PARAM_SEMANTIC_THRESHOLD, "").strip():
        try:
            semantic_threshold = float(parameters[PARAM_SEMANTIC_THRESHOLD])
        except ValueError:
            semantic_threshold = -1.0
        if not 0.0 < semantic_threshold <= 1.0 and not problem:
            problem = f"{PARAM_SEMANTIC_THRESHOLD} must be a number in (0, 1], got {parameters[PARAM_SEMANTIC_THRESHOLD]!r}"
    expert_low, expert_high = 0.0, 0.0
    if parameters.get(PARAM_EXPERT_COMPLEXITY, "").strip():
        try:
            expert_low, expert_high = parse_expert_band(parameters[PARAM_EXPERT_COMPLEXITY].strip())
        except ValueError as error:
            problem = problem or str(error)
    return RegisteredModel(
        name=name,
        version=version,
        ready=ready,
        task=parameters[PARAM_TASK].strip(),
        tier=tier,
        cost=cost,
        answer_kind=parameters[PARAM_ANSWER_KIND],
        confidence_method=parameters[PARAM_CONFIDENCE],
        output_name=parameters[PARAM_OUTPUT],
        refinement_input=parameters.get(PARAM_REFINEMENT_INPUT, "").strip(),
        sampling_input=parameters.get(PARAM_SAMPLING_INPUT, "").strip(),
        score_output=parameters.get(PARAM_SCORE_OUTPUT, "").strip(),
        complexity_model=parameters.get(PARAM_COMPLEXITY_MODEL, "").strip(),
        expert_low=expert_low,
        expert_high=expert_high,
        semantic_input=parameters.get(PARAM_SEMANTIC_INPUT, "").strip(),
        embedding_model=parameters.get(PARAM_EMBEDDING_MODEL, "").strip(),
        semantic_threshold=max(semantic_threshold, 0.0),
        cost_per_input_token=text.cost_per_input_token,
        cost_per_output_token=text.cost_per_output_token,
        answer_extraction=text.answer_extraction,
        prompt_format=text.prompt_format,
        agreement_samples=text.agreement_samples,
        answer_check=text.answer_check,
        problem=problem,
    )


@dataclass(frozen=True)
class _TextSettings:
    cost_per_input_token: float = 0.0
    cost_per_output_token: float = 0.0
    answer_extraction: str = ""
    prompt_format: str = ""
    agreement_samples: int = 0
    answer_check: str = ""


def _parse_text_settings(parameters: Mapping[str, str]) -> _TextSettings:
    """Reads a generated-text model's own parameters; ValueError names the one at fault."""
    costs = []
    for key in (PARAM_COST_PER_INPUT_TOKEN, PARAM_COST_PER_OUTPUT_TOKEN):
        try:
            value = float(parameters.get(key, ""))
        except ValueError:
            value = -1.0
        if not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"{key} must be a number >= 0, got {parameters.get(key, '')!r}")
        costs.append(value)
    extraction = parameters.get(PARAM_ANSWER_EXTRACTION, "").strip()
    if extraction not in ANSWER_EXTRACTIONS:
        raise ValueError(f"{PARAM_ANSWER_EXTRACTION} must be one of {', '.join(ANSWER_EXTRACTIONS)}, got {extraction!r}")
    prompt_format = parameters.get(PARAM_PROMPT_FORMAT, "").strip()
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"{PARAM_PROMPT_FORMAT} must be one of {', '.join(PROMPT_FORMATS)}, got {prompt_format!r}")
    samples_text = parameters.get(PARAM_AGREEMENT_SAMPLES, "").strip() or str(DEFAULT_AGREEMENT_SAMPLES)
    if not samples_text.isdigit() or not 2 <= int(samples_text) <= MAX_AGREEMENT_SAMPLES:
        raise ValueError(f"{PARAM_AGREEMENT_SAMPLES} must be an integer in [2, {MAX_AGREEMENT_SAMPLES}], got {samples_text!r}")
    check = parameters.get(PARAM_ANSWER_CHECK, "").strip()
    if check not in ANSWER_CHECKS:
        raise ValueError(f"{PARAM_ANSWER_CHECK} must be {ARITHMETIC_CHECK!r} or absent, got {check!r}")
    if check == ARITHMETIC_CHECK and extraction != LAST_NUMBER:
        raise ValueError(f"{PARAM_ANSWER_CHECK} {ARITHMETIC_CHECK!r} checks a computed answer: it needs {PARAM_ANSWER_EXTRACTION} 'last_number'")
    return _TextSettings(costs[0], costs[1], extraction, prompt_format, int(samples_text), check)


class RegistrySnapshot:
    """The registry at one moment: models by name, and the routable ones by task in tier order."""

    def __init__(self, models: Iterable[RegisteredModel] = ()) -> None:
        self.models: dict[str, RegisteredModel] = {model.name: model for model in models}

    def get(self, name: str) -> RegisteredModel | None:
        """Returns the model called ``name``, routable or not."""
        return self.models.get(name)

    def for_task(self, task: str) -> list[RegisteredModel]:
        """Returns the routable models of ``task``, cheapest tier first, then by name."""
        return sorted(
            (m for m in self.models.values() if m.routable and m.task == task),
            key=lambda m: (m.tier, m.cost, m.name),
        )

    def ordered(self) -> list[RegisteredModel]:
        """Returns every model, ordered by task, tier and name."""
        return sorted(self.models.values(), key=lambda m: (m.task, m.tier, m.name))
