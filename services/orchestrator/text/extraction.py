"""How the final answer is read from a generated text, as a task's models declare it.

Samples vote on, and caches and feedback compare, this extracted answer rather than the whole
text: two derivations that reach the same number are the same answer.
"""

from __future__ import annotations

import re

# A number as people write it in an answer: a sign, thousands separators, decimals.
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def normalize_number(text: str) -> str:
    """"1,234.50" -> "1234.5", "72.0" -> "72", "-3" -> "-3"; the text unchanged if it is no number."""
    digits = text.replace(",", "")
    try:
        value = float(digits)
    except ValueError:
        return text
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}"


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


def answer_span(text: str, method: str) -> tuple[int, int] | None:
    """Where in ``text`` the extracted answer lies, as (start, end) character offsets; None without one."""
    if method == "last_number":
        matches = list(_NUMBER.finditer(text))
        return (matches[-1].start(), matches[-1].end()) if matches else None
    stripped = text.strip()
    if not stripped:
        return None
    if method == "first_line":
        line = next(line for line in text.splitlines() if line.strip())
        start = text.index(line)
        return start, start + len(line)
    start = text.index(stripped)
    return start, start + len(stripped)
