# SPDX-License-Identifier: MIT
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from posd.errors import InputError
from posd.money import Fen
from posd.report import BUCKETS, NO_CHANNEL, Tally, bucket, daily_report, day_bounds, parse_day
from posd.sale import Sale, State

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
