# SPDX-License-Identifier: MIT
"""posd.core.layout: display widths, wrapping, pairs, and the text a console shows."""

import pytest

from posd.core.layout import Line, Qr, as_text, centred, pair, rule, title_size, width, wrap
from tests.core.test_core_imports import test_core_module_does_no_io as check_core


@pytest.mark.parametrize("module", ["layout.py", "print_jobs.py"])
def test_the_paper_core_does_no_io(module: str) -> None:
    check_core(module)


@pytest.mark.parametrize(("text", "columns"), [
    ("abc", 3), ("示例", 4), ("￥1", 3), ("，：", 4),  # noqa: RUF001 - full-width on purpose
    ("1345…0001", 10),  # "…" is ambiguous: two columns in GB18030 on a Chinese printer
    ("", 0),
])
def test_width(text: str, columns: int) -> None:
    assert width(text) == columns


def test_wrap_at_spaces_and_inside_words_too_wide() -> None:
    assert wrap("one two three", 7) == ["one two", "three"]
    assert wrap("示例便利店示例", 6) == ["示例便", "利店示", "例"]
    assert wrap("", 5) == [""]
    assert wrap("a\nb", 5) == ["a", "b"]


def test_pair_fills_the_line_or_splits_it() -> None:
    assert pair("Amount", "12.50", 16) == [Line("Amount     12.50")]
    assert pair("金额", "￥1", 8) == [Line("金额 ￥1")]  # noqa: RUF001
    assert pair("A long label", "value", 12) == [Line("A long label"), Line("value", "right")]
    assert pair("Net", "9.00", 16, size="large") == [Line("Net 9.00", size="large")]


def test_centred_and_title_size() -> None:
    assert centred("PAID", 32, bold=True, size="large") == [Line("PAID", "center", True, "large")]
    assert title_size("PAID", 32) == "large"
    assert title_size("DECLINED - NOT PAID", 32) == "tall"
    assert rule(4) == Line("----")


def test_as_text_aligns_with_cjk_widths() -> None:
    text = as_text([Line("示例", "center"), Line("ab", "right"), Qr("X1"), Line("")], 8)
    assert text.split("\n") == ["  示例", "      ab", "[QR: X1]", ""]
