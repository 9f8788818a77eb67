"""The arithmetic check: a derivation's written equations ("1000+375=1375") recomputed exactly.

Small models reason in the right direction and slip on the sums: "1000+375=3750" ends in a wrong
answer that no probability of the model's flags. Recomputing the equations a text writes catches
such slips for free, without another model call. An equation counts as a slip only when it is
plainly wrong: a right-hand side that rounds its left-hand side (100/3=33.33), or an integer that
truncates it (7/2=3, people counted whole), is not one. What cannot be read as arithmetic (words,
a unit, an unbalanced bracket) is not checked at all.

Pure: no gRPC. Every bound is enforced before any work that grows with it.
"""

from __future__ import annotations

import ast
import itertools
import re
from dataclasses import dataclass, field
from fractions import Fraction

# One token of a derivation. Each alternative is linear, and none overlaps another, so reading a
# text costs time proportional to its length, whatever a model writes.
_TOKEN = re.compile(
    r"(?P<number>(?:\$\s?)?\d+(?:,\d{3})*(?:\.\d+)?%?)"  # $1,375.50, $ 5, 20%
    r"|(?P<operator>[-+*/×÷])"
    r"|(?P<times>x(?=\s?[\d$(]))"  # "3 x 4": x between two numbers multiplies
    r"|(?P<open>\()|(?P<close>\))|(?P<equals>=)"
    r"|(?P<space>[ \t]+)"
    r"|(?P<other>.)",  # a word, a line's end: an equation does not go on past it
    re.DOTALL,
)
# Longer expressions or numbers are not checked: no derivation writes them, and exact fractions of
# huge numbers cost time that grows with their digits.
MAX_EXPRESSION_TOKENS = 40
MAX_NUMBER_DIGITS = 15
# Past this many equations a text is not read further (a text is bounded by max_tokens anyway).
MAX_EQUATIONS = 64
_ALLOWED_OPERATORS = {ast.Add: Fraction.__add__, ast.Sub: Fraction.__sub__, ast.Mult: Fraction.__mul__, ast.Div: Fraction.__truediv__}


@dataclass(frozen=True)
class ArithmeticCheck:
    """What recomputing a text's equations found: how many were read, and the wrong ones as written."""

    equations: int = 0
    slips: tuple[str, ...] = field(default=())

    @property
    def holds(self) -> bool:
        """Whether no equation of the text is wrong (a text with none holds)."""
        return not self.slips


def check_arithmetic(text: str) -> ArithmeticCheck:
    """Recomputes every equation ``text`` writes; the slips are those whose sides plainly differ."""
    equations = 0
    slips = []
    for chain in _chains(text):
        for left, right in itertools.pairwise(chain):
            if equations >= MAX_EQUATIONS:
                return ArithmeticCheck(equations, tuple(slips))
            # The operands next to "=": what a side wrote before the left one, or after the right one, is not part of it.
            left, right = _segments(left)[-1], _segments(right)[0]
            left_numbers, right_numbers = _count(left, "number"), _count(right, "number")
            if left_numbers + right_numbers < 3 or not left_numbers or not right_numbers:
                continue  # "$5 = 5 dollars" restates a number: nothing to recompute
            left_values, right_values = _values(left), _values(right)
            if not left_values or not right_values:
                continue
            equations += 1
            # A bare number on one side may round the other; a percent sign may mean /100 or not.
            bare = right if right_numbers == 1 else left if left_numbers == 1 else None
            written = _spelled(bare) if bare is not None else None
            if all(_plainly_wrong(a, b, written) for a in left_values for b in right_values):
                slips.append(f"{_spelled(left)} = {_spelled(right)}")
    return ArithmeticCheck(equations, tuple(slips))


_Token = tuple[str, str]  # (kind, text)


def _chains(text: str) -> list[list[list[_Token]]]:
    """The runs of arithmetic tokens joined by "=", each as its sides (token lists); a run ends at
    anything that is not arithmetic: a word, a line's end."""
    chains: list[list[list[_Token]]] = []
    sides: list[list[_Token]] = [[]]
    previous = ""

    def close_chain() -> None:
        nonlocal sides
        if len(sides) > 1:
            chains.append(sides)
        sides = [[]]

    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "other"
        if kind == "space":
            continue
        if kind == "times" and previous not in ("number", "close"):
            kind = "other"
        if kind == "other":
            close_chain()
        elif kind == "equals":
            sides.append([])
        else:
            sides[-1].append(("operator" if kind == "times" else kind, match.group()))
        previous = kind
    close_chain()
    return chains


def _segments(side: list[_Token]) -> list[list[_Token]]:
    """A side cut where two operands meet without an operator ("12 5+5" is "12" and "5+5")."""
    segments: list[list[_Token]] = [[]]
    for token in side:
        last = segments[-1][-1][0] if segments[-1] else ""
        if last in ("number", "close") and token[0] in ("number", "open"):
            segments.append([])
        segments[-1].append(token)
    return segments


def _count(tokens: list[_Token], kind: str) -> int:
    return sum(1 for token in tokens if token[0] == kind)


def _spelled(tokens: list[_Token]) -> str:
    return "".join(text for _, text in tokens)


def _plainly_wrong(left: Fraction, right: Fraction, written: str | None) -> bool:
    """Whether the two sides cannot be meant as equal: not equal, not a rounding to the decimals
    ``written`` (the side that is a bare number) shows, and not the integer part people take of a
    count. Two expressions (no bare number: ``written`` None) must be equal."""
    if left == right:
        return False
    if written is None:
        return True
    _, _, decimals = written.strip().partition(".")
    decimals = decimals.rstrip("%")
    if decimals:
        return abs(left - right) > Fraction(1, 2 * 10 ** len(decimals))
    return abs(left - right) >= 1


def _values(tokens: list[_Token]) -> list[Fraction]:
    """The values an expression may mean: one, or two where a percent sign may divide by 100 or
    not ("50*20%" is 10, "(15/40)*100%" is 37.5); none when it is not arithmetic this reads."""
    if not tokens or len(tokens) > MAX_EXPRESSION_TOKENS:
        return []
    # Brackets the equation's neighbours opened or closed ("(so 3*4=12)") are not the expression's.
    while tokens[0][0] == "open" and _count(tokens, "open") > _count(tokens, "close"):
        tokens = tokens[1:]
    while tokens[-1][0] == "close" and _count(tokens, "close") > _count(tokens, "open"):
        tokens = tokens[:-1]
    readings = (True, False) if any(text.endswith("%") for _, text in tokens) else (True,)
    values = [_evaluate(tokens, percent_divides) for percent_divides in readings]
    return [value for value in values if value is not None]


def _parse_number(text: str, percent_divides: bool) -> Fraction | None:
    cleaned = text.replace("$", "").replace(",", "").replace(" ", "")
    digits = cleaned.removesuffix("%")
    if sum(c.isdigit() for c in digits) > MAX_NUMBER_DIGITS:
        return None
    value = Fraction(digits)
    return value / 100 if percent_divides and cleaned.endswith("%") else value


def _evaluate(tokens: list[_Token], percent_divides: bool) -> Fraction | None:
    """The exact value of an arithmetic expression, or None when it is not one this reads."""
    numbers: list[Fraction] = []
    source = []
    for kind, text in tokens:
        if kind == "number":
            parsed = _parse_number(text, percent_divides)
            if parsed is None:
                return None
            source.append(f"_{len(numbers)}")
            numbers.append(parsed)
        else:
            source.append({"×": "*", "x": "*", "÷": "/"}.get(text, text))
    try:
        tree = ast.parse("".join(source), mode="eval")
        return _value(tree.body, numbers)
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return None


def _value(node: ast.expr, numbers: list[Fraction]) -> Fraction:
    """Evaluates the parsed expression over its numbers: names ``_i`` stand for them, and only
    the four operations and a sign are read."""
    if isinstance(node, ast.Name) and node.id.startswith("_") and node.id[1:].isdigit():
        return numbers[int(node.id[1:])]
    if isinstance(node, ast.BinOp) and type(node.op) in _ALLOWED_OPERATORS:
        return _ALLOWED_OPERATORS[type(node.op)](_value(node.left, numbers), _value(node.right, numbers))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _value(node.operand, numbers)
        return -operand if isinstance(node.op, ast.USub) else operand
    raise ValueError("not arithmetic")
