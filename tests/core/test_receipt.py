# SPDX-License-Identifier: MIT
from dataclasses import replace

import pytest

from posd import receipt
from posd import sale as m
from posd.money import Fen
from posd.sale import Action

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
