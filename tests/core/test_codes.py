# SPDX-License-Identifier: MIT
import pytest

from posd.core.codes import DoubleReadFilter, PrefixRule, classify, mask, route
from posd.core.errors import CodeError


@pytest.mark.parametrize(
    ("code", "channel"),
    [
        ("134567890123450001", "wechat"),
        ("104567890123450001", "wechat"),
        ("154567890123450001", "wechat"),
        ("281234567890120001", "alipay"),
        ("2512345678901234", "alipay"),
        ("301234567890123456789012", "alipay"),
        ("6212345678901234567", "unionpay"),
    ],
)
def test_classify(code: str, channel: str) -> None:
    assert classify(code) == channel


@pytest.mark.parametrize(
    "code",
    ["", "abc", "16456789012345000", "164567890123450001", "1345678901234500011",
     "24123456789012000", "311234567890120001", "2512345678901", "１３４５６７８９０１２３４５０００１",
     "13456789012345000a", "https://example.com/x"],
)
def test_classify_refuses_with_a_reason(code: str) -> None:
    with pytest.raises(CodeError) as err:
        classify(code)
    assert str(err.value)


def test_route_refuses_a_channel_that_is_not_enabled() -> None:
    assert route("134567890123450001", ["wechat"]) == "wechat"
    with pytest.raises(CodeError, match="Alipay is not accepted"):
        route("281234567890120001", ["wechat"])
    with pytest.raises(CodeError, match="UnionPay is not accepted"):
        route("6212345678901234567", ["wechat", "alipay"])


def test_custom_prefix_table() -> None:
    rules = (PrefixRule("wechat", ("10", "19"), 18, 18),)
    assert classify("194567890123450001", rules) == "wechat"
    with pytest.raises(CodeError):
        classify("281234567890120001", rules)


def test_mask_keeps_first_and_last_four() -> None:
    assert mask("134567890123450001") == "1345…0001"
    assert "56789012345" not in mask("134567890123450001")
    assert mask("") == ""
    assert mask("1234") == "…"


def test_double_read_filter() -> None:
    f = DoubleReadFilter(window_s=2.0)
    assert not f.is_repeat("1", 10.0)
    assert f.is_repeat("1", 11.0)
    assert not f.is_repeat("2", 11.5)
    assert not f.is_repeat("1", 12.0)
    assert not f.is_repeat("1", 14.5)
