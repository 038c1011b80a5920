# SPDX-License-Identifier: MIT
from dataclasses import replace

import pytest

from posd.core import receipt
from posd.core import sale as m
from posd.core.money import Fen
from posd.core.sale import Action

HEADER = receipt.Header("示例便利店 Example Mart", "S001", "T01", "1 Road")
T0 = 1_700_000_000.0


def paid() -> m.Sale:
    sale = replace(m.new_sale("S001T01231114221320000001", Fen(1250), T0, order_ref="R-9"), id=7)
    sale = m.start_pay(sale, "wechat", "1345…0001", T0, m.Policy())
    return m.on_result(sale, Action.PAY, m.Paid("4200000001", Fen(1250)), T0 + 1, m.Policy())


def test_width_counts_cjk_as_two() -> None:
    assert receipt.width("abc") == 3
    assert receipt.width("示例") == 4
    assert receipt.width("￥1") == 3


@pytest.mark.parametrize("columns", [32, 48])
def test_lines_fit_the_paper(columns: int) -> None:
    for line in receipt.text(paid(), HEADER, columns=columns).splitlines():
        assert receipt.width(line) <= columns, line


def test_paid_receipt_content() -> None:
    text = receipt.text(paid(), HEADER)
    assert "PAID" in text and "CNY 12.50" in text and "WeChat Pay" in text
    assert "1345…0001" in text and "S001T01231114221320000001" in text
    assert "4200000001" in text and "R-9" in text
    assert "2023-11-15 06:13:21" in text  # China Standard Time whatever the host's zone
    assert "REPRINT" not in text
    assert "REPRINT" in receipt.text(paid(), HEADER, reprint=True)


def test_declined_receipt_says_not_paid_and_why() -> None:
    sale = replace(m.new_sale("X1", Fen(100), T0), id=1)
    sale = m.start_pay(sale, "wechat", "1345…0003", T0, m.Policy())
    sale = m.on_result(sale, Action.PAY, m.Declined("NOTENOUGH", "Insufficient balance"), T0, m.Policy())
    text = receipt.text(sale, HEADER)
    assert "DECLINED - NOT PAID" in text and "Insufficient balance" in text


# --- layout elements: sizes, languages, paper widths ----------------------------------------

from posd.core.layout import Line, Qr, scale  # noqa: E402 - grouped with the tests that use them

STATES = [m.State.PAID, m.State.DECLINED, m.State.REVERSED, m.State.NEEDS_ATTENTION]


def in_state(state: m.State) -> m.Sale:
    return replace(paid(), state=state, message="The customer's bank said no; ask for "
                   "another payment method please, thank you")


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("columns", [32, 48])
def test_every_line_fits_the_paper_at_its_size(state: m.State, language: receipt.Language,
                                               columns: int) -> None:
    header = receipt.Header("示例便利店 Example Mart, a rather long store name indeed", "S001",
                            "T01", "上海市 1 Road")
    layout = receipt.elements(in_state(state), header, columns=columns, language=language,
                              reprint=True, printed_at=T0, footer="谢谢惠顾 Thank you")
    for element in layout:
        if isinstance(element, Line):
            assert receipt.width(element.text) * scale(element.size) <= columns, element


def test_the_title_is_large_when_it_fits_else_tall() -> None:
    title = next(e for e in receipt.elements(paid(), HEADER) if isinstance(e, Line)
                 and e.text == "PAID")
    assert (title.size, title.bold, title.align) == ("large", True, "center")
    declined = receipt.elements(in_state(m.State.DECLINED), HEADER, columns=32)
    assert Line("DECLINED - NOT PAID", "center", True, "tall") in declined
    wide = receipt.elements(in_state(m.State.DECLINED), HEADER, columns=48)
    assert Line("DECLINED - NOT PAID", "center", True, "large") in wide


def test_the_amount_is_bold_and_tall() -> None:
    layout = receipt.elements(paid(), HEADER)
    amount = next(e for e in layout if isinstance(e, Line) and "CNY 12.50" in e.text)
    assert (amount.bold, amount.size) == (True, "tall")
    assert receipt.width(amount.text) == 32


def test_a_qr_code_of_the_out_trade_no_unless_switched_off() -> None:
    layout = receipt.elements(paid(), HEADER)
    assert [e for e in layout if isinstance(e, Qr)] == [Qr("S001T01231114221320000001")]
    assert "Scan to find this sale" in receipt.text(paid(), HEADER)
    assert not [e for e in receipt.elements(paid(), HEADER, qr=False) if isinstance(e, Qr)]


def test_chinese_receipt() -> None:
    text = receipt.text(paid(), HEADER, language="zh")
    for part in ("支付成功", "￥12.50", "微信支付", "付款码", "1345…0001", "商户订单号",  # noqa: RUF001
                 "S001T01231114221320000001", "渠道交易号", "4200000001", "收银单号", "R-9",
                 "2023-11-15 06:13:21", "扫码查询本笔交易", "流水号 7"):
        assert part in text, part
    assert "¥" not in text  # the half-width yen sign is not in GBK  # noqa: RUF003
    assert "金额" in text.splitlines()[5] and text.splitlines()[5].endswith("￥12.50")  # noqa: RUF001


@pytest.mark.parametrize(("state", "en", "zh"), [
    (m.State.DECLINED, "DECLINED - NOT PAID", "支付失败 未收款"),
    (m.State.REVERSED, "REVERSED - NOT PAID", "已撤销 未收款"),
    (m.State.NEEDS_ATTENTION, "NEEDS ATTENTION", "需人工核实"),
])
def test_slips_for_sales_not_paid_say_so_in_both_languages(state: m.State, en: str,
                                                            zh: str) -> None:
    assert en in receipt.text(in_state(state), HEADER)
    assert "The customer's bank said no" in receipt.text(in_state(state), HEADER)
    assert zh in receipt.text(in_state(state), HEADER, language="zh")


def test_a_reprint_is_marked_with_when_it_was_printed() -> None:
    layout = receipt.elements(paid(), HEADER, reprint=True, printed_at=T0 + 86400)
    texts = [e.text for e in layout if isinstance(e, Line)]
    assert "*** REPRINT ***" in texts and "Printed 2023-11-16 06:13:20" in texts
    zh = receipt.elements(paid(), HEADER, language="zh", reprint=True, printed_at=T0)
    assert Line("*** 补打小票 ***", "center", True) in zh


def test_a_long_store_name_wraps_and_a_footer_is_centred() -> None:
    header = receipt.Header("示例便利店示例便利店示例便利店 Example Mart", "S001", "T01")
    layout = receipt.elements(paid(), header, footer="谢谢惠顾")
    assert layout[:2] == [Line("示例便利店示例便利店示例便利店", "center", True),
                          Line("Example Mart", "center", True)]
    assert Line("谢谢惠顾", "center") in layout


def test_80mm_paper_uses_48_columns() -> None:
    lines = receipt.lines(paid(), HEADER, columns=48)
    assert max(receipt.width(line) for line in lines) == 48
    assert "Amount" in lines[5] and lines[5].endswith("CNY 12.50")
