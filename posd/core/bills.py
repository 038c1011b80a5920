# SPDX-License-Identifier: MIT
"""The channels' daily bills (对账单), read from their bytes into rows. [core]

Pure: bytes in, :class:`Bill` out; no I/O, no clock. Both formats are read by column *name*,
never by position (WeChat: "the column order is not fixed"; DESIGN §10), and a bill that
cannot be read raises :class:`BillError` with the line that broke it: a manager must never
be told "all matched" about a file posd did not understand.

WeChat Pay v2 ``/pay/downloadbill`` (reference/channels.md §1.9): UTF-8 text (sometimes with
a BOM, sometimes gzip when ``tar_type=GZIP``), ``\\r\\n`` lines, a header row, detail rows in
which every value is prefixed with a backtick, amounts in yuan, then a summary header
(总交易单数, 应结订单总金额, 退款总金额, ..., 手续费总金额) and its row. 交易状态 is
``SUCCESS`` for a payment, ``REFUND`` for a refund (dated when it was *started*, its 退款状态
never updated later) and ``REVOKED`` for a payment reversed after it was taken.

Alipay ``alipay.data.dataservice.bill.downloadurl.query`` (§2.11): a zip
``{pid}_{yyyyMMdd}.csv.zip`` holding ``..._业务明细.csv`` and ``..._业务明细(汇总).csv``,
GBK-encoded (entry names too), ``#`` lines before and after the table, values padded with
tabs and spaces, headers with full- or half-width brackets (``订单金额（元）``). 业务类型 is
``交易`` for a payment and ``退款`` for a refund, with negative amounts and the refund's
``退款批次号/请求号``. How a cancel of a paid trade appears is not documented: a refund row
with no request number, or numbered like the trade itself, is read as that cancel
(:attr:`RowKind.REVOKE`; docs/reconciliation.md says this is an assumption).

Amounts are integer fen; fees are integer thousandths of a fen (WeChat writes 手续费 to
1/100,000 yuan), always positive for money the channel kept.
"""

from __future__ import annotations

import csv
import enum
import gzip
import io
import re
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from posd.core.errors import InputError
from posd.core.money import Fen
from posd.core.zones import BEIJING

#: At most this many bytes of bill text (a zip entry or an uncompressed WeChat bill): about
#: 600,000 rows. A larger file is refused rather than read into memory (a zip bomb).
MAX_BILL_BYTES = 256 * 1024 * 1024

#: 1 fen in the unit fees are counted in (WeChat's 手续费 has five decimals of a yuan).
FEE_PER_FEN = 1000


class BillError(InputError):
    """The bill cannot be read (its format, not a business answer): say where and why."""


class RowKind(enum.StrEnum):
    PAYMENT = "payment"  # money taken
    REFUND = "refund"  # money returned by a refund request
    REVOKE = "revoke"  # a taken payment returned by a reverse / cancel
    OTHER = "other"  # a row posd does not know how to read: shown, never matched


@dataclass(frozen=True, slots=True)
class BillRow:
    """One detail row of a bill, in posd's terms (``status`` keeps the bill's own words)."""

    channel: str
    kind: RowKind
    at: float  # epoch seconds (the bill's Beijing time)
    out_trade_no: str
    channel_trade_no: str
    #: a payment's order amount; a refund's or a revoke's amount returned (positive).
    amount: Fen
    #: the channel's fee, thousandths of a fen: positive when kept, negative when given back.
    fee: int = 0
    out_refund_no: str = ""
    channel_refund_no: str = ""
    #: the bill's status words: WeChat 交易状态 (and 退款状态), Alipay 业务类型.
    status: str = ""
    refund_status: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class Bill:
    """One channel's bill of one Beijing day."""

    channel: str
    day: date
    rows: tuple[BillRow, ...]
    #: the bill's own summary (WeChat's 总交易单数 ... row; Alipay's ``#`` 合计 lines).
    summary: Mapping[str, str] = field(default_factory=dict)
    #: what looked wrong without stopping the reading (e.g. the summary disagrees).
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NoBill:
    """The channel has no bill of that day (not made yet, or nothing happened that day)."""

    detail: str


@dataclass(frozen=True, slots=True)
class BillFailed:
    """The bill could not be had now (network, a refusal, an answer that did not verify)."""

    detail: str


#: what a channel client's ``download_bill`` returns: the file's bytes, or why not
BillAnswer = bytes | NoBill | BillFailed


def empty(channel: str, day: date) -> Bill:
    """The bill of a day on which the channel has nothing (its "no bill" answer for a day
    long past: WeChat's ``No Bill Exist``, Alipay's ``isp.bill_not_exist``)."""
    return Bill(channel, day, ())


# --- WeChat Pay v2 ------------------------------------------------------------------------

#: The columns posd reads (the ALL bill has 27; the others are kept out of its way).
WECHAT_REQUIRED = ("交易时间", "微信订单号", "商户订单号", "交易状态", "应结订单金额")


def parse_wechat(data: bytes, day: date) -> Bill:
    """A WeChat ``ALL`` bill, as downloaded (gzip or text). BillError when unreadable."""
    text = _decode(_gunzip(data), "utf-8")
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise BillError("the WeChat bill is empty")
    header = [_wechat_cell(c) for c in _csv_line(lines[0], 1)]
    missing = [name for name in WECHAT_REQUIRED if name not in header]
    if missing:
        raise BillError(f"line 1: the WeChat bill has no column {', '.join(missing)} "
                        "(is this an ALL bill?)")
    # Only the columns posd reads are unwrapped (27 cells a row, 10,000 rows: it counts).
    wanted = [(name, header.index(name)) for name in WECHAT_COLUMNS if name in header]
    rows: list[BillRow] = []
    summary: dict[str, str] = {}
    summary_header: list[str] | None = None
    for number, cells in _csv_rows(lines, start=2):
        if not cells or not any(c.strip() for c in cells):
            continue
        if summary_header is not None:
            summary = dict(zip(summary_header, (_wechat_cell(c) for c in cells), strict=False))
            break
        if _wechat_cell(cells[0]) == "总交易单数":
            summary_header = [_wechat_cell(c) for c in cells]
            continue
        if len(cells) != len(header):
            raise BillError(f"line {number}: {len(cells)} values under {len(header)} columns")
        rows.append(_wechat_row(_wechat_cells(cells, wanted), number))
    warnings = _wechat_warnings(rows, summary)
    return Bill("wechat", day, tuple(rows), summary, warnings)


#: Every column :func:`_wechat_row` may read.
WECHAT_COLUMNS = (*WECHAT_REQUIRED, "订单金额", "申请退款金额", "退款金额", "商户退款单号",
                  "微信退款单号", "退款状态", "手续费")


def _wechat_cells(cells: Sequence[str], wanted: Sequence[tuple[str, int]]) -> dict[str, str]:
    """The wanted columns of a row, each without its backtick (one call per row, not per
    cell: this loop is most of reading a 10,000-row bill)."""
    out = {}
    for name, index in wanted:
        value = cells[index].strip()
        out[name] = value[1:].strip() if value[:1] == "`" else value
    return out


def _wechat_cell(value: str) -> str:
    value = value.strip()
    return value[1:].strip() if value.startswith("`") else value


def _wechat_row(cells: Mapping[str, str], line: int) -> BillRow:
    status = cells["交易状态"]
    order = _amount(cells.get("订单金额") or cells["应结订单金额"], line, "订单金额")
    returned = _amount(cells.get("申请退款金额") or cells.get("退款金额") or "0", line, "退款金额")
    kind = {"SUCCESS": RowKind.PAYMENT, "REFUND": RowKind.REFUND,
            "REVOKED": RowKind.REVOKE}.get(status, RowKind.OTHER)
    if kind is RowKind.REVOKE and returned == 0:
        returned = order  # a reversed payment written as one row with no refund amount
    refund_no = cells.get("商户退款单号", "")
    return BillRow(
        channel="wechat", kind=kind, at=_time(cells["交易时间"], line),
        out_trade_no=cells["商户订单号"], channel_trade_no=cells["微信订单号"],
        amount=order if kind is RowKind.PAYMENT or kind is RowKind.OTHER else returned,
        fee=_fee(cells.get("手续费", "0"), line, places=5),
        out_refund_no="" if refund_no in ("", "0") else refund_no,
        channel_refund_no=_zero_empty(cells.get("微信退款单号", "")),
        status=status, refund_status=cells.get("退款状态", ""), line=line,
    )


def _wechat_warnings(rows: Sequence[BillRow], summary: Mapping[str, str]) -> tuple[str, ...]:
    if not summary:
        return ("the WeChat bill has no summary rows: it may have been cut short",)
    count = summary.get("总交易单数", "")
    if count.isdigit() and int(count) != len(rows):
        return (f"the WeChat bill's summary counts {count} rows, it has {len(rows)}: it may "
                "have been cut short",)
    return ()


# --- Alipay ---------------------------------------------------------------------------------

ALIPAY_REQUIRED = ("支付宝交易号", "商户订单号", "业务类型", "订单金额(元)")
_DETAIL = "业务明细.csv"


def parse_alipay(data: bytes, day: date) -> Bill:
    """An Alipay ``trade`` bill zip, as downloaded. BillError when unreadable."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data), metadata_encoding="gbk")
    except (zipfile.BadZipFile, ValueError) as err:
        raise BillError(f"the Alipay bill is not a zip file: {err}") from None
    with archive:
        names = [i for i in archive.infolist() if _normalise(i.filename).endswith(_DETAIL)]
        if not names:
            listed = ", ".join(i.filename for i in archive.infolist()) or "nothing"
            raise BillError(f"the Alipay bill zip has no ..._业务明细.csv (it holds {listed})")
        info = names[0]
        if info.file_size > MAX_BILL_BYTES:
            raise BillError(f"{info.filename}: {info.file_size} bytes is too large a bill")
        try:
            with archive.open(info) as entry:
                raw = entry.read(MAX_BILL_BYTES + 1)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
            raise BillError(f"{info.filename}: cannot be unpacked: {err}") from None
    if len(raw) > MAX_BILL_BYTES:
        raise BillError(f"{info.filename}: more than {MAX_BILL_BYTES} bytes")
    return parse_alipay_csv(raw, day)


def parse_alipay_csv(raw: bytes, day: date) -> Bill:
    """The ``业务明细.csv`` entry of an Alipay bill (GBK bytes)."""
    text = _decode(raw, "gb18030")  # a superset of GBK: every GBK file decodes the same
    header: list[str] | None = None
    rows: list[BillRow] = []
    comments: list[str] = []
    table: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("#"):
            comments.append(line.lstrip("#").strip())
        elif line.strip():
            table.append((number, line))
    numbers = [n for n, _ in table]
    for index, raw_cells in _csv_rows([line for _, line in table], start=0):
        number = numbers[index]
        cells = [c.strip(" \t") for c in raw_cells]
        if header is None:
            header = [_normalise(c) for c in cells]
            missing = [n for n in ALIPAY_REQUIRED if n not in header]
            if missing:
                raise BillError(f"line {number}: the Alipay bill has no column "
                                f"{', '.join(missing)}")
            continue
        if len(cells) != len(header):
            raise BillError(f"line {number}: {len(cells)} values under {len(header)} columns")
        rows.append(_alipay_row(dict(zip(header, cells, strict=True)), number))
    if header is None:
        raise BillError("the Alipay bill has no table (only # lines)")
    summary = {"comments": "\n".join(comments)}
    return Bill("alipay", day, tuple(rows), summary, _alipay_warnings(rows, comments))


def _alipay_row(cells: Mapping[str, str], line: int) -> BillRow:
    business = cells["业务类型"]
    amount = abs(_amount(cells["订单金额(元)"] or cells.get("商家实收(元)", ""), line, "订单金额"))
    out_trade_no = cells["商户订单号"]
    request_no = cells.get("退款批次号/请求号", "")
    if business == "交易":
        kind = RowKind.PAYMENT
    elif business == "退款":
        kind = RowKind.REVOKE if request_no in ("", out_trade_no) else RowKind.REFUND
    else:
        kind = RowKind.OTHER
    when = cells.get("完成时间") or cells.get("创建时间", "")
    return BillRow(
        channel="alipay", kind=kind, at=_time(when, line), out_trade_no=out_trade_no,
        channel_trade_no=cells["支付宝交易号"], amount=Fen(amount),
        # 服务费 is negative where Alipay kept it (a payment) and positive where it gave it back
        fee=-_fee(cells.get("服务费(元)") or "0", line, places=2),
        out_refund_no=request_no if kind is RowKind.REFUND else "",
        status=business, line=line,
    )


_TALLY = re.compile(r"(交易|退款)合计[:：]\s*([0-9]+)\s*笔")


def _alipay_warnings(rows: Sequence[BillRow], comments: Iterable[str]) -> tuple[str, ...]:
    """Alipay's ``#交易合计：N笔`` / ``#退款合计：N笔`` lines against the rows read."""
    found = []
    for comment in comments:
        if (match := _TALLY.search(comment)) is None:
            continue
        word, count = match.group(1), int(match.group(2))
        kinds = (RowKind.PAYMENT,) if word == "交易" else (RowKind.REFUND, RowKind.REVOKE)
        have = sum(1 for r in rows if r.kind in kinds)
        if have != count:
            found.append(f"the Alipay bill's {word}合计 says {count} rows, it has {have}: it "
                         "may have been cut short")
    return tuple(found)


# --- shared ---------------------------------------------------------------------------------

_NUMBER = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?", re.ASCII)


def _gunzip(data: bytes) -> bytes:
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as unpacked:
            out = unpacked.read(MAX_BILL_BYTES + 1)
    except (OSError, EOFError) as err:
        raise BillError(f"the bill is damaged gzip: {err}") from None
    if len(out) > MAX_BILL_BYTES:
        raise BillError(f"the bill is more than {MAX_BILL_BYTES} bytes unpacked")
    return out


def _decode(data: bytes, encoding: str) -> str:
    if len(data) > MAX_BILL_BYTES:
        raise BillError(f"the bill is more than {MAX_BILL_BYTES} bytes")
    try:
        return data.decode(encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        raise BillError(f"the bill is not {encoding} text (byte {err.start})") from None


def _csv_line(line: str, number: int) -> list[str]:
    try:
        return next(csv.reader([line]), [])
    except csv.Error as err:
        raise BillError(f"line {number}: {err}") from None


def _csv_rows(lines: Sequence[str], *, start: int) -> Iterator[tuple[int, list[str]]]:
    """(number, cells) of ``lines[start - 1:]`` numbered from ``start`` (1-based lines; a
    ``start`` of 0 numbers ``lines`` from 0), read by one reader: one line is one row (the
    channels quote no line breaks)."""
    first = max(start - 1, 0)
    reader = csv.reader(lines[first:])
    number = start
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise BillError(f"line {number}: {err}") from None
        yield number, cells
        number += 1


def _normalise(name: str) -> str:
    """Full-width brackets as half-width, no spaces: ``订单金额（元）`` -> ``订单金额(元)``."""
    return name.replace("（", "(").replace("）", ")").replace(" ", "").replace("\t", "")


def _units(text: str, places: int, line: int, what: str) -> int:
    """``-12.5`` at ``places`` decimals -> -1250 (places=2). BillError for anything else."""
    whole, dot, part = text.partition(".")
    if whole.isdigit() and part.isdigit() and len(part) <= places and whole.isascii() \
            and part.isascii():  # "12.50": most amounts, without the regular expression
        fast: int = int(whole) * 10**places + int(part.ljust(places, "0"))
        return fast
    match = _NUMBER.fullmatch(text.strip().replace(",", ""))
    if match is None or len(match.group(3) or "") > places:
        raise BillError(f"line {line}: {what} {text!r} is not an amount in yuan")
    sign, whole, part = match.groups()
    value: int = int(whole) * 10**places + int((part or "").ljust(places, "0") or 0)
    return -value if sign else value


def _amount(text: str, line: int, what: str) -> Fen:
    return Fen(_units(text, 2, line, what))


def _fee(text: str, line: int, *, places: int) -> int:
    """A fee in thousandths of a fen (5 places of a yuan = 3 of a fen)."""
    scale: int = 10 ** (5 - places)
    return _units(text, places, line, "手续费") * scale


_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})",
                   re.ASCII)
_DAY_STARTS: dict[str, float] = {}


def _time(text: str, line: int) -> float:
    """``yyyy-MM-dd HH:mm:ss`` Beijing time -> epoch seconds (UTC+8 has no daylight saving:
    a day's start plus the seconds; strptime would be a third of the parse's time)."""
    match = _TIME.fullmatch(text.strip())
    hour, minute, second = (int(match.group(i)) for i in (4, 5, 6)) if match else (99, 0, 0)
    if match is None or hour > 23 or minute > 59 or second > 59:
        raise BillError(f"line {line}: {text!r} is not a time (yyyy-MM-dd HH:mm:ss)")
    day = text.strip()[:10]
    start = _DAY_STARTS.get(day)
    if start is None:
        try:
            start = datetime(int(day[:4]), int(day[5:7]), int(day[8:10]),
                             tzinfo=BEIJING).timestamp()
        except ValueError:
            raise BillError(f"line {line}: {text!r} is not a time (yyyy-MM-dd HH:mm:ss)") \
                from None
        if len(_DAY_STARTS) < 1000:
            _DAY_STARTS[day] = start
    return start + hour * 3600 + minute * 60 + second


def _zero_empty(value: str) -> str:
    return "" if value == "0" else value


def rows_of(bills: Iterable[Bill]) -> Iterator[BillRow]:
    for bill in bills:
        yield from bill.rows
