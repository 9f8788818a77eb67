"""The arithmetic check: a derivation's written equations ("1000+375=1375") recomputed exactly.

Small models reason in the right direction and slip on the sums: "1000+375=3750" ends in a wrong
answer that no probability of the model's flags. Recomputing the equations a text writes catches
such slips for free, without another model call. An equation counts as a slip only when it is
plainly wrong: a number that rounds or truncates the other side (100/3=33.33, 20/3=6.66), the
whole part of a quotient (7/2=3, people counted whole), or a running total (5 + 3 = 8 + 2 = 10) is
not one. What cannot be read as arithmetic (words, a unit, a time of day, a mixed number, a
percentage added to its own base) is not checked at all.

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
    r"(?P<clock>\d+:\d\d)"  # a time of day (9:45): not a number to compute with
    r"|(?P<number>(?:\$ ?)?(?:\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)%?)"  # $1,375.50, $ 5, $.50, 20%
    r"|(?P<dash>-(?=\s))"  # a minus before a space: a bullet where it opens an equation
    r"|(?P<operator>[-+*/×÷−])"
    r"|(?P<times>x(?=\s?[\d$(]))"  # "3 x 4": x between two numbers multiplies
    r"|(?P<open>\()|(?P<close>\))|(?P<equals>=)"
    r"|(?P<space>[ \t]+)"
    r"|(?P<other>.)",  # a word, a line's end: an equation does not go on past it
    re.DOTALL,
)
_SPELLINGS = {"×": "*", "x": "*", "÷": "/", "−": "-"}
# Longer expressions or numbers are not checked: no derivation writes them, and exact fractions of
# huge numbers cost time that grows with their digits.
MAX_EXPRESSION_TOKENS = 40
MAX_NUMBER_DIGITS = 15
# Past this many equations a text is not read further (a text is bounded by max_tokens anyway).
MAX_EQUATIONS = 64
_ALLOWED_OPERATORS = {ast.Add: Fraction.__add__, ast.Sub: Fraction.__sub__, ast.Mult: Fraction.__mul__, ast.Div: Fraction.__truediv__}

_Token = tuple[str, str]  # (kind, text)


@dataclass(frozen=True)
class ArithmeticCheck:
    """What recomputing a text's equations found: how many were read, and the wrong ones."""

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
        for left_side, right_side in itertools.pairwise(chain):
            if equations >= MAX_EQUATIONS:
                return ArithmeticCheck(equations, tuple(slips))
            left, right = _expression(left_side), _expression(right_side)
            if left is None or right is None:
                continue  # two numbers side by side (a mixed number, "he has 5 3*2"): not read
            left_numbers, right_numbers = _count(left, "number"), _count(right, "number")
            if left_numbers + right_numbers < 3 or not left_numbers or not right_numbers:
                continue  # "$5 = 5 dollars" restates a number: nothing to recompute
            if _relative_percent(left) or _relative_percent(right):
                continue  # "$50 - 20% = $40" takes a share of its own base: not read
            left_values, right_values = _values(left), _values(right)
            if not left_values or not right_values:
                continue
            equations += 1
            if not _equal_as_written(left, left_values, right, right_values):
                slips.append(f"{_spelled(left)} = {_spelled(right)}")
    return ArithmeticCheck(equations, tuple(slips))


def _equal_as_written(left: list[_Token], left_values: list[tuple[bool, Fraction]], right: list[_Token], right_values: list[tuple[bool, Fraction]]) -> bool:
    """Whether the two sides may be meant as equal.

    A bare number (one side of a single number) may round or truncate the other side to the
    decimals it writes, or, after a division, be its whole part. Two expressions are equal, or the
    right one starts with the left one's value: a running total ("5 + 3 = 8 + 2 = 10").
    """
    sides = [(right, right_values, left, left_values), (left, left_values, right, right_values)]
    for bare, bare_values, other, other_values in sides:
        if _count(bare, "number") == 1:
            number = next(text for kind, text in bare if kind == "number")
            divides = any(kind == "operator" and text in "/÷" for kind, text in other)
            return any(_stands_for(written, percent, number, value, divides) for percent, written in bare_values for _, value in other_values)
    if any(a == b for _, a in left_values for _, b in right_values):
        return True
    leading = next((i for i, (kind, _) in enumerate(right) if kind == "operator" and i > 0), len(right))
    first = right[:leading]
    if _count(first, "number") != 1:
        return False
    number = next(text for kind, text in first if kind == "number")
    return any(_stands_for(written, percent, number, value, False) for percent, written in _values(first) for _, value in left_values)


def _stands_for(written: Fraction, percent_divided: bool, number: str, value: Fraction, divides: bool) -> bool:
    """Whether ``number`` (read as ``written``) may stand for ``value``: equal, rounded or truncated
    to the decimals it writes, rounded to a whole number, or the whole part of a quotient."""
    if written == value:
        return True
    _, _, decimals = number.removesuffix("%").partition(".")
    places = len(decimals) + (2 if percent_divided and number.endswith("%") else 0)
    if places:
        return abs(written - value) < Fraction(1, 10**places)
    return abs(written - value) <= Fraction(1, 2) or (divides and abs(written - value) < 1)


def _relative_percent(tokens: list[_Token]) -> bool:
    """Whether a percentage is added to or taken from something ("$50 - 20%")."""
    return any(
        kind == "number" and text.endswith("%") and index > 0 and tokens[index - 1][1] in "+-−"
        for index, (kind, text) in enumerate(tokens)
    )


def _chains(text: str) -> list[list[list[_Token]]]:
    """The runs of arithmetic tokens joined by "=", each as its sides (token lists); a run ends at
    anything that is not arithmetic: a word, a time of day, a line's end."""
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
        if kind == "dash":
            if len(sides) == 1 and not sides[0]:
                continue  # "- 5 * 3 = 15": a list's bullet, not a sign
            kind = "operator"
        if kind in ("other", "clock"):
            close_chain()
        elif kind == "equals":
            sides.append([])
        else:
            sides[-1].append(("operator" if kind == "times" else kind, match.group()))
        previous = kind
    close_chain()
    return chains


def _expression(side: list[_Token]) -> list[_Token] | None:
    """A side as an expression, "2(5+3)" multiplying; None where two numbers meet without an operator."""
    expression: list[_Token] = []
    for token in side:
        last = expression[-1][0] if expression else ""
        if last in ("number", "close") and token[0] == "open":
            expression.append(("operator", "*"))
        elif last in ("number", "close") and token[0] == "number":
            return None
        expression.append(token)
    return expression


def _count(tokens: list[_Token], kind: str) -> int:
    return sum(1 for token in tokens if token[0] == kind)


def _spelled(tokens: list[_Token]) -> str:
    return "".join(text for _, text in tokens)


def _values(tokens: list[_Token]) -> list[tuple[bool, Fraction]]:
    """The values an expression may mean, each with whether its percent signs divide by 100: one,
    or two where a percent sign may divide or not ("50*20%" is 10, "(15/40)*100%" is 37.5); none
    when it is not arithmetic this reads."""
    if not tokens or len(tokens) > MAX_EXPRESSION_TOKENS:
        return []
    # Brackets the equation's neighbours opened or closed ("(so 3*4=12)") are not the expression's.
    while tokens and tokens[0][0] == "open" and _count(tokens, "open") > _count(tokens, "close"):
        tokens = tokens[1:]
    while tokens and tokens[-1][0] == "close" and _count(tokens, "close") > _count(tokens, "open"):
        tokens = tokens[:-1]
    readings = (True, False) if any(text.endswith("%") for _, text in tokens) else (True,)
    values = [(percent_divides, _evaluate(tokens, percent_divides)) for percent_divides in readings]
    return [(percent_divides, value) for percent_divides, value in values if value is not None]


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
            source.append(_SPELLINGS.get(text, text))
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
