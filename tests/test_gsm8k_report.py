"""The GSM8K benchmark's report as pure logic: a row's summary, the answers recorded under other
answer checks marked, and the issue's budget of k = 8 samples read from the self-consistency row."""

from __future__ import annotations

from benchmarks.gsm8k import summarise, targets
from inferscale.v1 import common_pb2

CHECKS = {"llm_qwen_coder_1_5b": "arithmetic"}
MODEL = "llm_qwen_coder_1_5b"
SAMPLE = common_pb2.DECISION_CONTRIBUTED


def _record(right: bool, tokens: int, cpu: float, samples: int, checks: dict | None = CHECKS) -> dict:
    record = {
        "right": right,
        "output_tokens": tokens,
        "cpu_seconds": cpu,
        "cost": 1.0,
        "steps": [[MODEL, SAMPLE, 0.9, "1", 1.0]] * samples,
    }
    if checks is not None:
        record["answer_checks"] = checks
    return record


def test_a_row_with_an_answer_recorded_under_other_checks_is_stale() -> None:
    fresh = summarise("row", [_record(True, 10, 1.0, 1), _record(False, 30, 3.0, 1)], CHECKS)
    assert not fresh["stale"] and fresh["accuracy"] == 0.5 and fresh["tokens"] == 20
    assert summarise("row", [_record(True, 10, 1.0, 1), _record(True, 10, 1.0, 1, checks=None)], CHECKS)["stale"]


def test_the_budget_of_k_8_is_eight_samples_averaged_per_problem() -> None:
    greedy = summarise(f"{MODEL} greedy", [_record(True, 50, 5.0, 1), _record(False, 50, 5.0, 1)], CHECKS)
    # One easy problem of 2 samples at 40 tokens each, one hard of 8 at 100 each: a sample costs
    # (40 + 100) / 2 = 70 tokens per problem, so 8 cost 560 (not 8 x 880 / 10 = 704).
    adaptive = summarise(
        f"{MODEL} self-consistency k<=8", [_record(True, 80, 2.0, 2), _record(True, 800, 16.0, 8)], CHECKS
    )
    (accuracy_target, _) = targets([greedy, adaptive], greedy)
    assert "560 tokens, 12.00 CPU s" in accuracy_target  # CPU: (2/2 + 16/8) / 2 = 1.5 a sample
    # 1.0 >= 1.3 x 0.5 within 560 tokens (440 spent): met.
    assert accuracy_target.endswith(f"{MODEL} self-consistency k<=8 (1.000; tokens, cpu)")
