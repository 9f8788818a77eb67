"""How the final answer is read from a generated text, as a task's models declare it.

Samples vote on, and caches and feedback compare, this extracted answer rather than the whole
text: two derivations that reach the same number are the same answer.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

# Longer numbers are compared digit for digit, without parsing.
MAX_NUMBER_CHARS = 100
# A number as people write it in an answer: a sign, thousands separators, decimals.
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def normalize_number(text: str) -> str:
    """"1,234.50" -> "1234.5", "72.0" -> "72", "-3" -> "-3", every digit kept; the text unchanged if it is no number.

    Exact decimal arithmetic: a float would turn a 309-digit number into infinity and merge
    numbers that differ past their 16th digit. A number longer than MAX_NUMBER_CHARS is only
    stripped of its separators: no answer of a task is that long, and its digits are kept as they are.
    """
    digits = text.replace(",", "")
    if len(digits) > MAX_NUMBER_CHARS:
        return digits
    try:
        value = Decimal(digits)
    except InvalidOperation:
        return text
    if not value.is_finite():
        return text
    if value == 0:
        return "0"
    if value == value.to_integral_value():
        return format(value.to_integral_value(), "f")
    return format(value.normalize(), "f")


def extract_answer(text: str, method: str) -> str:
    """The final answer of ``text`` by ``method``; "" when there is none.

    - ``last_number``: the last number in the text, normalised (GSM8K's convention: the answer
      comes last, after "####" or "The answer is").
    - ``first_line``: the first non-empty line, stripped.
    - ``whole_text``: the text with its whitespace collapsed.
    """
    if method == "last_number":
        numbers = _NUMBER.findall(text)
        return normalize_number(numbers[-1].rstrip(",")) if numbers else ""
    if method == "first_line":
        return next((line.strip() for line in text.splitlines() if line.strip()), "")
    if method == "whole_text":
        return " ".join(text.split())
    raise ValueError(f"answer extraction {method!r} is not last_number, first_line or whole_text")


def number_spans(text: str) -> list[tuple[int, int]]:
    """Where each number of ``text`` lies, as (start, end) character offsets, in order; a comma
    that ends a clause ("3, so") is not part of its number."""
    return [(match.start(), match.start() + len(match.group().rstrip(","))) for match in _NUMBER.finditer(text)]


def answer_span(text: str, method: str) -> tuple[int, int] | None:
    """Where in ``text`` the extracted answer lies, as (start, end) character offsets; None without one."""
    if method == "last_number":
        spans = number_spans(text)
        return spans[-1] if spans else None
    stripped = text.strip()
    if not stripped:
        return None
    if method == "first_line":
        line = next(line for line in text.splitlines() if line.strip())
        start = text.index(line)
        return start, start + len(line)
    start = text.index(stripped)
    return start, start + len(stripped)
