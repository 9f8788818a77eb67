"""The arithmetic check of a derivation's equations, as pure logic: slips found, what people write
as equal not taken for one, what is not arithmetic left alone, and every bound held on hostile text."""

from __future__ import annotations

import pytest

from services.orchestrator.text.arithmetic import MAX_EQUATIONS, check_arithmetic


@pytest.mark.parametrize(
    ("text", "slips"),
    [
        # Slips a model makes in a right derivation (GSM8K train samples of the 1.5B model).
        ("His total earnings were 1000+375=3750$", ["1000+375 = 3750"]),
        ("So he has 1375-80-150=1045 dollars left", ["1375-80-150 = 1045"]),
        ("(80-15*4)/10=5 boxes", ["(80-15*4)/10 = 5"]),
        ("He had 93-122=-39 left", ["93-122 = -39"]),
        # Each equation of a chain is its own: the first holds, the second does not.
        ("20 - 5 = 15 = 14 + 3", ["15 = 14+3"]),  # spaces within a side are dropped
        ("3*2=6\n4+1=6", ["4+1 = 6"]),
        ("x is 2x3=7", ["2x3 = 7"]),
        ("1.5*4 = 3*2.1", ["1.5*4 = 3*2.1"]),  # two expressions must be equal: no rounding read into either
        # A whole number rounds a sum to the nearest: 8.98 is not 8.
        ("$4.99 + $3.99 = $8", ["$4.99+$3.99 = $8"]),
        ("1.5 + 1.2 = 2", ["1.5+1.2 = 2"]),
        ("15/40 = 90%", ["15/40 = 90%"]),
        ("−5 + 3 = −3", ["−5+3 = −3"]),  # the Unicode minus
    ],
)
def test_a_wrong_equation_is_a_slip_named_by_its_sides(text: str, slips: list[str]) -> None:
    check = check_arithmetic(text)
    assert not check.holds and list(check.slips) == slips


@pytest.mark.parametrize(
    "text",
    [
        "He uses it 3*2=6 times\nSo he spends $30/6=$5 each use\n#### 5",
        "$1,000 + $375 = $1,375",
        "$50*20 + $25*15 = $1000 + $375 = $1375",  # a chain: each side a value
        "3 x 4 = 12 boxes",
        "1.5*4=6.0",
        "100/3=33.33",  # rounded to the decimals written
        "7/2=3 full boxes",  # the whole part of a count
        "50*20%=10",  # a percent sign that divides by 100
        "(15/40)*100% = 37.5%",  # and one that does not
        "(so 3*4=12)",  # brackets of the sentence, not of the expression
        "She has 3, 4+5=9 in all",  # a list's comma is no thousands separator
        "5 + 3 = 8 + 2 = 10",  # running totals
        "120 * 2 = 240 / 4 = 60",
        "Costs:\n- 5 * 3 = 15\n- 2 * 4 = 8",  # a list's bullets are no minus signs
        "2 (5+3) = 16",  # a bracket after a number multiplies
        "$.50 * 4 = $2",
        "20/3 = 6.66",  # truncated to the decimals written
    ],
)
def test_what_people_write_as_equal_holds(text: str) -> None:
    check = check_arithmetic(text)
    assert check.holds and check.equations >= 1


@pytest.mark.parametrize(
    "text",
    [
        "It costs $5 = 5 dollars",  # a restatement: nothing to recompute
        "2/0=5",  # no value
        "The box holds 3 apples and 4 pears = 9 fruit",  # words between the numbers
        "111111111111111111111111111111+1=2",  # past MAX_NUMBER_DIGITS: not read
        "#### 42",
        "1 1/2 + 1 1/2 = 3",  # a mixed number
        "3:45 + 15 = 4:00",  # times of day
        "$50 - 20% = $40",  # a percentage of its own base
        "",
    ],
)
def test_what_is_not_arithmetic_is_not_checked(text: str) -> None:
    assert check_arithmetic(text) == check_arithmetic("")


@pytest.mark.parametrize(
    "text",
    [
        "1" + " " * 8000 + "=",
        "1+" * 4000 + "=",
        "(" * 4000 + "1" + ")" * 4000 + "+1=2",
        "1+1=" * 2000,
        "((((1+1)))) = " * 700,
        "99999999999999/0.0000000000001=1 " * 500,
        "=" * 16000,
    ],
)
def test_hostile_text_is_read_within_its_bounds(text: str) -> None:
    # Reading is linear in the text (no pattern backtracks); past MAX_EQUATIONS nothing more is read.
    check = check_arithmetic(text)
    assert check.equations <= MAX_EQUATIONS and len(check.slips) <= check.equations
