# SPDX-License-Identifier: MIT
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from posd.core.errors import InputError
from posd.core.money import Fen
from posd.core.report import BUCKETS, NO_CHANNEL, Tally, bucket, daily_report, day_bounds, parse_day
from posd.core.sale import Sale, State

DAY = date(2024, 5, 1)


def _sale(sale_id: int, state: State, amount: int, channel: str | None = "wechat") -> Sale:
    return Sale(f"S001T01{sale_id:06d}", Fen(amount), 1714521600.0, state=state, id=sale_id,
                channel=channel)


def test_every_state_has_a_bucket() -> None:
    assert {bucket(state) for state in State} == set(BUCKETS)


def test_daily_report_counts_and_totals_per_channel() -> None:
    sales = [
        _sale(1, State.PAID, 1250),
        _sale(2, State.PAID, 300),
        _sale(3, State.DECLINED, 500),
        _sale(4, State.REVERSED, 400),
        _sale(5, State.NEEDS_ATTENTION, 200),
        _sale(6, State.PAID, 999, "alipay"),
        _sale(7, State.CONFIRMING, 50, "alipay"),
        _sale(8, State.CANCELLED, 700, None),
        _sale(9, State.NEEDS_ATTENTION, 20, "alipay"),
    ]
    report = daily_report(DAY, sales)
    assert report.day == DAY
    alipay, none, wechat = report.channels  # sorted by name
    assert (alipay.channel, none.channel, wechat.channel) == ("alipay", NO_CHANNEL, "wechat")
    assert wechat.paid == Tally(2, Fen(1550))
    assert wechat.declined == Tally(1, Fen(500))
    assert wechat.reversed == Tally(1, Fen(400))
    assert wechat.needs_attention == Tally(1, Fen(200))
    assert wechat.net == 1550
    assert wechat.count == 5
    assert alipay.in_progress == Tally(1, Fen(50))
    assert none.cancelled == Tally(1, Fen(700))
    assert report.total.paid == Tally(3, Fen(2549))
    assert report.total.count == len(sales)
    assert report.net == 2549  # needs_attention and in-progress money is never in net
    assert report.needs_attention == (5, 9)


def test_an_empty_day() -> None:
    report = daily_report(DAY, [])
    assert report.channels == ()
    assert report.total.count == 0
    assert report.net == 0
    assert report.needs_attention == ()


@pytest.mark.parametrize("text", ["2024-13-01", "2024-02-30", "20240501", "2024-W18-3", "today",
                                  "", " 2024-05-01",
                                  "２０２４-05-01"])  # noqa: RUF001 - full-width digits on purpose
def test_parse_day_refuses_with_a_clear_message(text: str) -> None:
    with pytest.raises(InputError, match="YYYY-MM-DD"):
        parse_day(text)


def test_parse_day() -> None:
    assert parse_day("2024-05-01") == DAY


def test_day_bounds_are_local_midnights() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    start, end = day_bounds(DAY, shanghai)
    assert datetime.fromtimestamp(start, shanghai) == datetime(2024, 5, 1, tzinfo=shanghai)
    assert end - start == 86400


def test_a_daylight_saving_day_is_not_24_hours() -> None:
    start, end = day_bounds(date(2024, 3, 10), ZoneInfo("America/New_York"))
    assert end - start == 23 * 3600


# --- business days, SQL totals, paper, CSV ----------------------------------------------------

from posd.core import report as r  # noqa: E402 - grouped with the tests that use it
from posd.core.layout import Line, as_text  # noqa: E402
from posd.core.receipt import Header  # noqa: E402

SHANGHAI = ZoneInfo("Asia/Shanghai")
HEADER = Header("示例便利店 Example Mart", "S001", "T01")


def _at(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2024, 5, day, hour, minute, tzinfo=SHANGHAI).timestamp()


def test_a_business_day_runs_from_the_cutoff_hour() -> None:
    start, end = day_bounds(DAY, SHANGHAI, 4)
    assert (start, end) == (_at(1, 4), _at(2, 4))
    assert r.business_day(_at(2, 3, 59), SHANGHAI, 4) == DAY
    assert r.business_day(_at(2, 4), SHANGHAI, 4) == date(2024, 5, 2)
    assert r.business_day(_at(2, 3, 59), SHANGHAI) == date(2024, 5, 2)


@pytest.mark.parametrize(("at", "cutoff", "day"), [
    (_at(1, 23, 30), 0, 1),   # closing at night: today
    (_at(2, 0, 5), 0, 1),     # just after midnight: the day that has just ended
    (_at(2, 4, 10), 4, 1),    # just after a 04:00 cut-off: yesterday's business day
    (_at(2, 3, 50), 4, 1),    # just before it: still that day
    (_at(1, 17, 0), 4, 1),    # past the middle of the day: the day in progress
    (_at(1, 15, 0), 4, 30),   # before the middle: the previous day (April 30)
])
def test_closing_day_is_the_day_ending_nearest(at: float, cutoff: int, day: int) -> None:
    assert r.closing_day(at, SHANGHAI, cutoff) == (date(2024, 5, day) if day < 30
                                                   else date(2024, 4, day))


SALES = [
    _sale(1, State.PAID, 1250), _sale(2, State.PAID, 300), _sale(3, State.DECLINED, 500),
    _sale(4, State.REVERSED, 400), _sale(5, State.NEEDS_ATTENTION, 200),
    _sale(6, State.PAID, 999, "alipay"), _sale(7, State.CONFIRMING, 50, "alipay"),
    _sale(8, State.CANCELLED, 700, None),
]


def _rows(sales: list[Sale]) -> list[r.TotalsRow]:
    rows: dict[tuple[str | None, str], tuple[int, int]] = {}
    for sale in sales:
        count, amount = rows.get((sale.channel, sale.state.value), (0, 0))
        rows[(sale.channel, sale.state.value)] = (count + 1, amount + sale.amount)
    return [(channel, state, count, amount) for (channel, state), (count, amount) in rows.items()]


def test_from_totals_gives_the_figures_of_daily_report() -> None:
    attention = [s for s in SALES if s.state is State.NEEDS_ATTENTION]
    summed = r.from_totals(DAY, _rows(SALES), attention, since=1.0, until=2.0, complete=False)
    direct = daily_report(DAY, SALES)
    assert (summed.channels, summed.total, summed.needs_attention, summed.attention) == (
        direct.channels, direct.total, direct.needs_attention, direct.attention)
    assert (summed.since, summed.until, summed.kind, direct.kind) == (1.0, 2.0, "X", "Z")
    assert summed.attention == (r.AttentionSale(5, "S001T01000005", "wechat", Fen(200)),)


def test_the_report_on_paper() -> None:
    report = r.from_totals(DAY, _rows(SALES), [SALES[4]], since=_at(1, 4), until=_at(2, 4),
                           complete=True)
    layout = r.elements(report, HEADER, tz=SHANGHAI, printed_at=_at(2, 4, 5))
    text = as_text(layout, 32)
    assert Line("Z-REPORT", "center", True, "large") in layout
    for part in ("Business day          2024-05-01", "From            2024-05-01 04:00",
                 "To              2024-05-02 04:00", "Printed         2024-05-02 04:05",
                 "WeChat Pay", "Alipay", "No code scanned", "ALL CHANNELS",
                 "Paid               2       15.50", "Declined           1        5.00",
                 "Reversed           1        4.00", "In progress        1        0.50",
                 "Cancelled          1        7.00", "Net                    CNY 25.49",
                 "NEEDS ATTENTION                1", "Sale 5 WeChat Pay       CNY 2.00",
                 "S001T01000005"):
        assert part in text, part
    assert max(r.width(line) for line in text.splitlines()) <= 32


def test_the_x_report_in_chinese() -> None:
    report = r.from_totals(DAY, _rows(SALES), [], since=_at(1, 0), until=_at(2, 0),
                           complete=False)
    text = as_text(r.elements(report, HEADER, tz=SHANGHAI, language="zh", columns=48), 48)
    for part in ("X报表(截至目前)", "营业日", "微信支付", "支付宝", "全部渠道合计", "收款",
                 "￥25.49", "需人工核实", "无"):  # noqa: RUF001
        assert part in text, part


def test_csv_has_a_row_per_channel_and_one_for_all() -> None:
    lines = r.as_csv(daily_report(DAY, SALES)).splitlines()
    assert lines[0].split(",")[:5] == ["day", "kind", "channel", "paid_count", "paid_yuan"]
    assert lines[0].endswith(",net_yuan")
    rows = {line.split(",")[2]: line.split(",") for line in lines[1:]}
    assert set(rows) == {"alipay", "wechat", NO_CHANNEL, "all"}
    assert rows["wechat"][3:5] == ["2", "15.50"] and rows["all"][-1] == "25.49"


def test_refunds_count_per_channel_and_lower_the_net() -> None:
    from datetime import date

    from posd.core.report import daily_report, with_refunds

    base = daily_report(date(2024, 5, 1), [])
    report = with_refunds(base, [("alipay", 2, 1500), ("wechat", 1, 200)])
    alipay = next(c for c in report.channels if c.channel == "alipay")
    assert (alipay.refunded.count, alipay.refunded.amount, alipay.net) == (2, 1500, -1500)
    assert (report.total.refunded.count, report.net) == (3, -1700)
    assert with_refunds(base, []) is base
