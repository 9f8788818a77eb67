"""How sure a text answer is: its tokens' (or its derivation's) probabilities, the agreement of samples, or a verifier's score."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.orchestrator.text.contract import Token
from services.orchestrator.text.extraction import answer_span, number_spans


def token_probability(tokens: Sequence[Token], method: str) -> float:
    """The geometric mean of the probabilities of the tokens that spell the extracted answer.

    The answer's own tokens, rather than the whole text's: a model can be fluent about a
    derivation and unsure of the number it ends on, and that number is what is scored. A text
    with no answer to extract scores 0.
    """
    text = "".join(token.text for token in tokens)
    span = answer_span(text, method)
    return _spans_probability(tokens, [span] if span is not None else [])


def derivation_probability(tokens: Sequence[Token]) -> float:
    """The geometric mean of the probabilities of the tokens of every number the text writes: its
    derivation's intermediate results as well as its answer.

    For answers that are computed (a last number reached step by step): once the derivation is
    written, its final number follows from it almost surely, so the answer's own tokens say little;
    an arithmetic slip shows as a less likely number on the way. On GSM8K train problems it
    separated right from wrong answers far better than the answer's tokens (docs/generative.md).
    A text without a number scores 0.
    """
    text = "".join(token.text for token in tokens)
    return _spans_probability(tokens, number_spans(text))


def _spans_probability(tokens: Sequence[Token], spans: Sequence[tuple[int, int]]) -> float:
    """The geometric mean probability of the tokens that overlap any of ``spans`` (character
    offsets into the tokens' joined text, in order); 0 when none does."""
    inside: list[float] = []
    position = 0
    pending = iter(spans)
    span = next(pending, None)
    for token in tokens:
        token_end = position + len(token.text)
        while span is not None and span[1] <= position:
            span = next(pending, None)
        if span is None:
            break
        if token_end > span[0] and position < span[1]:
            inside.append(token.logprob)
        position = token_end
    if not inside:
        return 0.0
    return math.exp(sum(inside) / len(inside))


# The verifier's answer tokens that mean yes and no, as tokenizers split them.
_YES = ("yes", " yes")
_NO = ("no", " no")


def verifier_score(first_token_top: dict[str, float]) -> float:
    """P(yes) / (P(yes) + P(no)) from the most likely first tokens of a verifier's reply; 0 with neither."""
    yes = sum(math.exp(lp) for token, lp in first_token_top.items() if token.lower() in _YES)
    no = sum(math.exp(lp) for token, lp in first_token_top.items() if token.lower() in _NO)
    if yes + no == 0:
        return 0.0
    return yes / (yes + no)


@dataclass
class Vote:
    """Self-consistency's tally: how many samples reached each extracted answer.

    A sample with no answer to extract counts as a sample but votes for nothing. So does a sample
    whose text failed its model's answer check (an arithmetic slip), while any sample's text holds:
    its answer is kept aside and decides only when every sample failed.
    """

    counts: Counter[str] = field(default_factory=Counter)
    # The answers of samples whose text failed its check.
    failed: Counter[str] = field(default_factory=Counter)
    samples: int = 0

    def add(self, label: str, *, holds: bool = True) -> None:
        """Counts one sample's extracted answer; ``holds`` False when its text failed its check."""
        self.samples += 1
        if label:
            (self.counts if holds else self.failed)[label] += 1

    def leader(self) -> tuple[str, int]:
        """The answer most samples reached (the first to get there among equals) and its votes:
        among the samples whose text held, or among all when none did."""
        tally = self.counts or self.failed
        if not tally:
            return "", 0
        best = max(tally.values())
        label = next(label for label, count in tally.items() if count == best)
        return label, best

    def share(self) -> float:
        """The leader's share of all samples: self-consistency's confidence (0 when only failed texts voted)."""
        if not self.counts:
            return 0.0
        return self.leader()[1] / self.samples

    def settled(self, max_samples: int, threshold: float, min_samples: int = 3) -> str:
        """Why sampling may stop now, or "" to go on.

        Stops when no other answer can overtake the leader with the samples left, or when at
        least ``min_samples`` were drawn and the leader's share reaches ``threshold``. Samples
        whose text failed their check settle nothing.
        """
        if not self.counts:
            return ""
        label, votes = self.leader()
        runner_up = max((c for other, c in self.counts.items() if other != label), default=0)
        left = max_samples - self.samples
        if votes > runner_up + left:
            return f"answer {label!r} leads {votes} to {runner_up} with {left} samples left: no other answer can win"
        if self.samples >= min_samples and self.share() >= threshold:
            return f"answer {label!r} holds {votes} of {self.samples} samples, share {self.share():.2f} >= {threshold:.2f}"
        return ""
