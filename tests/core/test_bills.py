# SPDX-License-Identifier: MIT
"""The bill parsers (posd.core.bills) on bills written by hand from the channels' format
descriptions (reference/channels.md §1.9, §2.11), not by posd's simulator: a BOM, backticks,
``\\r\\n``, shuffled columns and gzip for WeChat; a GBK zip with GBK entry names, ``#`` lines,
padded values and full-width headers for Alipay; and every way a file can be bad."""

from __future__ import annotations

import gzip
import io
import random
import zipfile
from datetime import date, datetime

import pytest

from posd.core.bills import BillError, RowKind, parse_alipay, parse_alipay_csv, parse_wechat
from posd.core.zones import BEIJING

DAY = date(2026, 11, 30)

#: The ALL bill's 27 columns in the order WeChat's page lists them.
WECHAT_COLUMNS = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,"
    "交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,"
    "充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,"
    "费率备注").split(",")
WECHAT_SUMMARY = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"


def wechat_row(**values: str) -> dict[str, str]:
    row = dict.fromkeys(WECHAT_COLUMNS, "")
    row.update({"公众账号ID": "wx2421b1c4370ec43b", "商户号": "10000100", "特约商户号": "0",
                "用户标识": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "交易类型": "MICROPAY",
                "付款银行": "CMC", "货币种类": "CNY", "代金券金额": "0.00", "充值券退款金额": "0.00",
                "微信退款单号": "0", "商户退款单号": "0", "退款金额": "0.00", "退款类型": "",
                "退款状态": "", "商品名称": "测试店", "商户数据包": "", "费率": "0.60%",
                "申请退款金额": "0.00", "费率备注": ""})
    row.update(values)
    return row


def wechat_bill(rows: list[dict[str, str]], *, columns: list[str] | None = None,
                bom: bool = False, count: int | None = None) -> bytes:
    columns = columns or WECHAT_COLUMNS
    lines = [",".join(columns)]
    lines += [",".join(f"`{row[c]}" for c in columns) for row in rows]
    lines.append(WECHAT_SUMMARY)
    n = len(rows) if count is None else count
    lines.append(f"`{n},`12.50,`2.00,`0.00,`0.07500,`12.50,`2.00")
    text = "\r\n".join(lines) + "\r\n"
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")


PAID = wechat_row(交易时间="2026-11-30 10:01:02", 设备号="T01",
                  微信订单号="4200000001202611300000000001",
                  商户订单号="S001T01261130020102000001", 交易状态="SUCCESS",
                  应结订单金额="12.50", 手续费="0.07500", 订单金额="12.50")
REFUND = wechat_row(交易时间="2026-11-30 11:00:00", 设备号="T01",
                    微信订单号="4200000001202611300000000001",
                    商户订单号="S001T01261130020102000001", 交易状态="REFUND",
                    应结订单金额="12.50", 微信退款单号="50000000012026113000000001",
                    商户退款单号="S001T01R261130030000000001", 退款金额="2.00",
                    退款类型="ORIGINAL", 退款状态="SUCCESS", 手续费="-0.01200",
                    订单金额="12.50", 申请退款金额="2.00")
REVOKED = wechat_row(交易时间="2026-11-30 12:00:00", 设备号="T01",
                     微信订单号="4200000001202611300000000002",
                     商户订单号="S001T01261130040000000002", 交易状态="REVOKED",
                     应结订单金额="30.00", 手续费="0.00000", 订单金额="30.00")


def at(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING).timestamp()


def test_wechat_all_bill_read_by_column_name() -> None:
    bill = parse_wechat(wechat_bill([PAID, REFUND, REVOKED]), DAY)
    paid, refund, revoked = bill.rows
    assert (paid.kind, paid.amount, paid.fee, paid.at) == (
        RowKind.PAYMENT, 1250, 7500, at("2026-11-30 10:01:02"))
    assert paid.out_trade_no == "S001T01261130020102000001"
    assert paid.channel_trade_no == "4200000001202611300000000001"
    assert paid.out_refund_no == "" and paid.channel_refund_no == ""
    assert (refund.kind, refund.amount, refund.fee) == (RowKind.REFUND, 200, -1200)
    assert refund.out_refund_no == "S001T01R261130030000000001"
    assert refund.channel_refund_no == "50000000012026113000000001"
    assert refund.refund_status == "SUCCESS"
    # a payment reversed after it was taken: one row, its order amount returned
    assert (revoked.kind, revoked.amount) == (RowKind.REVOKE, 3000)
    assert bill.warnings == () and bill.summary["总交易单数"] == "3"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_wechat_columns_in_any_order_bom_and_gzip(seed: int) -> None:
    columns = list(WECHAT_COLUMNS)
    random.Random(seed).shuffle(columns)
    raw = wechat_bill([PAID, REFUND, REVOKED], columns=columns, bom=True)
    plain = parse_wechat(wechat_bill([PAID, REFUND, REVOKED]), DAY)
    assert [(r.kind, r.amount, r.out_trade_no) for r in parse_wechat(raw, DAY).rows] == \
        [(r.kind, r.amount, r.out_trade_no) for r in plain.rows]
    assert parse_wechat(gzip.compress(raw), DAY).rows == parse_wechat(raw, DAY).rows


def test_wechat_summary_that_disagrees_is_a_warning() -> None:
    bill = parse_wechat(wechat_bill([PAID], count=5), DAY)
    assert len(bill.rows) == 1
    assert "counts 5 rows, it has 1" in bill.warnings[0]
    cut = wechat_bill([PAID]).split(b"\r\n" + WECHAT_SUMMARY.encode())[0]
    assert "no summary" in parse_wechat(cut, DAY).warnings[0]


def test_wechat_unknown_status_is_kept_as_other() -> None:
    odd = wechat_row(**{**PAID, "交易状态": "NOTPAY"})
    (row,) = parse_wechat(wechat_bill([odd]), DAY).rows
    assert row.kind is RowKind.OTHER and row.status == "NOTPAY"


@pytest.mark.parametrize(("raw", "words"), [
    (b"", "empty"),
    ("交易时间,商户订单号\r\n`2026-11-30 10:00:00,`X\r\n".encode(), "no column"),
    (b"\x1f\x8b\x08\x00garbage", "damaged gzip"),
    (b"\xff\xfe\x00\x00", "not utf-8"),
    (lambda: wechat_bill([PAID]).replace(b"`12.50", b"`12.5.0"),
     "not an amount"),
    (lambda: wechat_bill([PAID]).replace("`2026-11-30 10:01:02".encode(), "`yesterday".encode()),
     "not a time"),
    (lambda: wechat_bill([PAID]).replace(b",`T01,", b",`T01,`extra,"), "values under"),
])
def test_wechat_bad_files_say_where(raw: object, words: str) -> None:
    data = raw() if callable(raw) else raw
    with pytest.raises(BillError, match=words):
        parse_wechat(data, DAY)  # type: ignore[arg-type]


# --- Alipay -------------------------------------------------------------------------------

ALIPAY_HEADER = ("支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,"
                 "操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,"
                 "支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,"
                 "卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注")


def alipay_line(trade_no: str, out_trade_no: str, kind: str, amount: str, done: str,
                request_no: str = "", fee: str = "-0.08") -> str:
    cells = [trade_no, out_trade_no, kind, "测试店", done, done, "", "", "", "T01",
             "ali***@example.com", amount, amount, "0.00", "0.00", "0.00", "0.00", "0.00", "",
             "0.00", "0.00", request_no, fee, "0.00", ""]
    return ",".join(f"{c}\t" if i % 3 == 0 else f" {c} " for i, c in enumerate(cells))


def alipay_csv(lines: list[str], *, trades: int, refunds: int) -> bytes:
    text = "\r\n".join([
        "#支付宝业务明细查询",
        "#账号：[20881234567890120156]",
        "#起始日期：[2026年11月30日 00:00:00]   终止日期：[2026年12月01日 00:00:00]",
        "#-----------------------------------------业务明细列表----------------------------------------",
        ALIPAY_HEADER,
        *lines,
        "#-----------------------------------------业务明细列表结束------------------------------------",
        f"#交易合计：{trades}笔，商家实收共42.50元，商家优惠共0.00元",
        f"#退款合计：{refunds}笔，商家实收退款共-32.00元，商家优惠退款共0.00元",
        "#导出时间：[2026年12月01日 09:12:20]",
    ]) + "\r\n"
    return text.encode("gbk")


ALI_PAID = alipay_line("2026113022001400001000000001", "S001T01261130020102000003", "交易",
                       "12.50", "2026-11-30 10:01:02")
ALI_REFUND = alipay_line("2026113022001400001000000001", "S001T01261130020102000003", "退款",
                         "-2.00", "2026-11-30 11:00:00", "S001T01R261130030000000002", "0.01")
ALI_PAID2 = alipay_line("2026113022001400001000000002", "S001T01261130040000000004", "交易",
                        "30.00", "2026-11-30 12:00:00")
#: a cancel of a paid trade: not documented; with no request number, or the trade's own
ALI_CANCEL_BLANK = alipay_line("2026113022001400001000000002", "S001T01261130040000000004",
                               "退款", "-30.00", "2026-11-30 12:00:20", "", "0.18")
ALI_CANCEL_SAME = alipay_line("2026113022001400001000000002", "S001T01261130040000000004",
                              "退款", "-30.00", "2026-11-30 12:00:20",
                              "S001T01261130040000000004", "0.18")


def alipay_zip(detail: bytes, pid: str = "2088123456789012", day: str = "20261130",
               summary: bytes = b"#summary\r\n") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in ((f"{pid}_{day}_业务明细.csv", detail),
                           (f"{pid}_{day}_业务明细(汇总).csv", summary)):
            info = zipfile.ZipInfo(name)
            info.flag_bits &= ~0x800  # no UTF-8 flag: the name is GBK, as Alipay's are
            info.filename = name
            archive.writestr(_gbk_info(info), data)
    return buffer.getvalue()


def _gbk_info(info: zipfile.ZipInfo) -> zipfile.ZipInfo:
    class Gbk(zipfile.ZipInfo):
        def _encodeFilenameFlags(self) -> tuple[bytes, int]:  # noqa: N802 - zipfile's name
            return self.filename.encode("gbk"), self.flag_bits & ~0x800

    out = Gbk(info.filename, info.date_time)
    out.compress_type = zipfile.ZIP_DEFLATED
    return out


@pytest.mark.parametrize("cancel", [ALI_CANCEL_BLANK, ALI_CANCEL_SAME])
def test_alipay_gbk_zip_with_comments_padding_and_full_width_headers(cancel: str) -> None:
    data = alipay_zip(alipay_csv([ALI_PAID, ALI_REFUND, ALI_PAID2, cancel], trades=2,
                                 refunds=2))
    names = zipfile.ZipFile(io.BytesIO(data), metadata_encoding="gbk").namelist()
    assert names[0].endswith("_业务明细.csv")  # the entry names really are GBK
    bill = parse_alipay(data, DAY)
    paid, refund, paid2, revoke = bill.rows
    assert (paid.kind, paid.amount, paid.fee, paid.channel_trade_no) == (
        RowKind.PAYMENT, 1250, 8000, "2026113022001400001000000001")
    assert (refund.kind, refund.amount, refund.out_refund_no, refund.fee) == (
        RowKind.REFUND, 200, "S001T01R261130030000000002", -1000)
    assert paid2.kind is RowKind.PAYMENT
    assert (revoke.kind, revoke.amount, revoke.out_trade_no) == (
        RowKind.REVOKE, 3000, "S001T01261130040000000004")
    assert bill.warnings == ()
    assert "交易合计" in bill.summary["comments"]


def test_alipay_half_width_headers_and_tally_warning() -> None:
    raw = alipay_csv([ALI_PAID], trades=3, refunds=0).decode("gbk").replace(
        "（", "(").replace("）", ")").encode("gbk")
    bill = parse_alipay_csv(raw, DAY)
    assert [r.amount for r in bill.rows] == [1250]
    assert "交易合计 says 3 rows, it has 1" in bill.warnings[0]


@pytest.mark.parametrize(("data", "words"), [
    (b"not a zip", "not a zip"),
    (lambda: alipay_zip(b"")[:40], "not a zip"),
    (lambda: _zip_of({"x_业务明细(汇总).csv": b"#"}), "no ..._业务明细.csv"),
    (lambda: _zip_of({"x_业务明细.csv": "#只有注释\r\n".encode("gbk")}), "no table"),
    (lambda: _zip_of({"x_业务明细.csv": "支付宝交易号,商户订单号\r\n1,2\r\n".encode("gbk")}),
     "no column"),
    (lambda: _zip_of({"x_业务明细.csv": alipay_csv([ALI_PAID], trades=1, refunds=0).replace(
        b"12.50", b"12,5x")}), "values under|not an amount"),
])
def test_alipay_bad_files_say_why(data: object, words: str) -> None:
    raw = data() if callable(data) else data
    with pytest.raises(BillError, match=words):
        parse_alipay(raw, DAY)  # type: ignore[arg-type]


def _zip_of(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()
