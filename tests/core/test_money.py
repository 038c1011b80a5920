# SPDX-License-Identifier: MIT
import pytest
from hypothesis import given
from hypothesis import strategies as st

from posd.core.errors import AmountError
from posd.core.money import MAX_FEN, check_fen, format_yuan, parse_yuan


@pytest.mark.parametrize(
    ("text", "fen"),
    [("12.5", 1250), ("12.50", 1250), ("0.01", 1), ("1", 100), ("100000", 10_000_000), (" 3.2 ", 320)],
)
def test_parse_yuan_accepts(text: str, fen: int) -> None:
    assert parse_yuan(text) == fen


@pytest.mark.parametrize(
    "text", ["12.505", "-1", "1e3", "01.00", "０.５", "１２", "", ".5", "5.", "1,000", "0", "0.00",
             "nan", "inf", "12.5.0", "+1"],
)
def test_parse_yuan_refuses_with_a_clear_message(text: str) -> None:
    with pytest.raises(AmountError) as err:
        parse_yuan(text)
    assert "amount" in str(err.value)


@pytest.mark.parametrize("value", [12.5, "1250", True, 0, -1, MAX_FEN + 1, None])
def test_check_fen_refuses(value: object) -> None:
    with pytest.raises(AmountError):
        check_fen(value)


@given(st.integers(min_value=1, max_value=MAX_FEN))
def test_format_then_parse_round_trips(fen: int) -> None:
    assert parse_yuan(format_yuan(check_fen(fen))) == fen


def test_format_yuan() -> None:
    assert format_yuan(check_fen(1)) == "0.01"
    assert format_yuan(check_fen(1250)) == "12.50"
