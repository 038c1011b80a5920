# SPDX-License-Identifier: MIT
"""Reconciliation end to end (DESIGN §10): the real engine makes a day of sandbox sales,
refunds and reversals on both channels, the real clients download the simulator's bills in
the channels' formats, and posd says "all matched"; then each kind of difference is put into
the simulator's bill and posd says exactly what differs, asks the channel about it, and
shows the money a customer paid without a sale in /v1/health until a manager resolves it.
Faults on the download: nothing is judged from a bill posd did not get whole."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from datetime import date, timedelta
from pathlib import Path

import pytest

from posd import cli
from posd.channels.simulator import AlipayKeys, Simulator, TestPki
from posd.core.bills import BillFailed, NoBill, parse_alipay, parse_wechat
from posd.core.effects import Outputs
from posd.core.reconcile import Verdict, beijing_day, day_bounds
from posd.core.sale import State
from posd.daemon import build_channels
from posd.reconcile import DailyReconciliation, Reconciler, health_probe
from posd.store import Store
from tests.sandbox import Clock, config, make_config, start_simulator, to_toml
from tests.shell.test_engine import code
from tests.shell.test_refunds import RefundHarness, _harness, _sim  # noqa: F401 - fixtures

BILL_PATH = {"wechat": "/pay/downloadbill",
             "alipay": "/gateway.do?method=alipay.data.dataservice.bill.downloadurl.query"}


def today() -> date:
    return beijing_day(time.time())


@pytest.fixture(autouse=True)
def _not_near_midnight() -> None:
    """Sales made in the last minutes of a Beijing day are held for the next day's bill
    (rightly): the assertions below are about a day that is not ending."""
    start, end = day_bounds(today())
    if end - time.time() < 20 * 60:
        pytest.skip("too close to midnight, Beijing time: sales would be held")


@pytest.fixture(name="hq_store")
def _hq_store(h: RefundHarness) -> Iterator[Store]:
    """The same database, opened as a till with HQ sync (reconciliations go to the outbox)."""
    store = Store.open(h.cfg.database.path, outputs=Outputs(hq=True))
    yield store
    store.close()


@pytest.fixture(name="rec")
def _reconciler(h: RefundHarness, hq_store: Store, tmp_path: Path) -> Iterator[Reconciler]:
    channels = build_channels(h.cfg)
    yield Reconciler(hq_store, channels, store_id="S001", terminal_id="T01",
                     directory=tmp_path / "bills")
    for client in channels.values():
        client.close()


def a_day_of_sales(h: RefundHarness) -> dict[str, list[int]]:
    """Paid, part-refunded, fully refunded, declined, reversed with money returned, reversed
    with nothing taken: on both channels."""
    made: dict[str, list[int]] = {}
    for n, channel in enumerate(("wechat", "alipay")):
        paid = h.paid(channel, 5000, 10 * n + 1)
        part = h.paid(channel, 3000, 10 * n + 2)
        whole = h.paid(channel, 1250, 10 * n + 3)
        for sale, amount in ((part, 1000), (whole, None)):
            refund, _ = h.engine.refund(sale.id, amount, "customer returned it")
            assert h.refund_final(refund.id).state.value == "refunded"
        ids = [paid.id, part.id, whole.id]
        for ending, state in (("0003", State.DECLINED), ("0007", State.REVERSED),
                              ("0002", State.REVERSED)):
            sale, _ = h.engine.create_sale(800, auth_code=code(ending, 10 * n + 4, channel))
            assert h.settle(sale.id).state is state
            ids.append(sale.id)
        made[channel] = ids
    return made


def test_a_day_on_both_channels_all_matched_then_each_difference(
        h: RefundHarness, sim: Simulator, rec: Reconciler, hq_store: Store,
        tmp_path: Path) -> None:
    made = a_day_of_sales(h)
    outcomes = rec.run(today())
    assert [(o.channel, o.status) for o in outcomes] == [("wechat", "matched"),
                                                        ("alipay", "matched")], outcomes
    for o in outcomes:
        assert o.result is not None and o.result.all_matched
        assert o.result.counts[Verdict.MATCHED] == 6  # 4 trades with money, 2 refunds
        assert o.result.bill_paid.count == 4 and o.result.posd_refunded.count == 2
    # the bills are kept verbatim and read again the same
    kept = {p.name for p in (tmp_path / "bills" / "wechat").iterdir()} | {
        p.name for p in (tmp_path / "bills" / "alipay").iterdir()}
    assert kept == {f"{today()}.csv.gz", f"{today()}.csv.zip"}
    rows = parse_wechat((tmp_path / "bills" / "wechat" / f"{today()}.csv.gz").read_bytes(),
                        today()).rows
    assert sorted(r.kind.value for r in rows) == [
        "payment"] * 4 + ["refund"] * 2 + ["revoke"]
    zipped = (tmp_path / "bills" / "alipay" / f"{today()}.csv.zip").read_bytes()
    assert parse_alipay(zipped, today()).rows
    assert any(n.endswith("业务明细.csv") for n in zipfile.ZipFile(
        io.BytesIO(zipped), metadata_encoding="gbk").namelist())

    # each kind of difference, on each channel
    missing = {ch: sim.edit_bill(ch, "missing", out_trade_no=h.store.get(made[ch][0]).out_trade_no)
               for ch in ("wechat", "alipay")}
    other = {}
    for ch in ("wechat", "alipay"):
        paid_trades = [t for t in sim.ledger() if t["channel"] == ch and t["state"] == "paid"
                       and t["out_trade_no"] != missing[ch]["out_trade_no"]]
        other[ch] = sim.edit_bill(ch, "amount", out_trade_no=str(paid_trades[0]["out_trade_no"]),
                                  amount=4321)
    only = {ch: sim.edit_bill(ch, "channel_only", amount=777) for ch in ("wechat", "alipay")}
    outcomes = rec.run(today())
    for o in outcomes:
        assert o.status == "differences" and o.result is not None
        found = {d.out_trade_no: d for d in o.result.differences}
        assert len(found) == 3, o.result.differences
        d = found[only[o.channel]["out_trade_no"]]
        assert (d.verdict, d.money_taken, d.bill_amount) == (Verdict.CHANNEL_ONLY, True, 777)
        assert d.channel_trade_no == only[o.channel]["channel_trade_no"]
        assert d.followup.startswith("query: paid 7.77")
        d = found[missing[o.channel]["out_trade_no"]]
        assert (d.verdict, d.money_taken) == (Verdict.POSD_ONLY, False)
        assert d.followup.startswith("query: paid")  # the channel has it; its bill row not
        d = found[other[o.channel]["out_trade_no"]]
        assert (d.verdict, d.bill_amount) == (Verdict.AMOUNT_MISMATCH, 4321)

    # the money taken without a sale is in /v1/health's probe, with its numbers
    probe = health_probe(hq_store)()
    assert probe["unresolved"] == 6 and "degraded" in probe
    assert sorted(t["out_trade_no"] for t in probe["money_taken"]) == sorted(
        o["out_trade_no"] for o in only.values())
    # HQ gets a record per run
    kinds = [row.kind for row in hq_store.outbox_unsent(100)]
    assert kinds.count("reconciliation") == 4
    # a manager resolves them; then health is clear and HQ hears of it
    for item in hq_store.open_differences():
        hq_store.resolve_difference(item["id"], "refunded in the merchant platform", time.time())
    assert "degraded" not in health_probe(hq_store)()
    assert [row.kind for row in hq_store.outbox_unsent(100)].count("reconciliation") == 10
    # a run again keeps the resolutions of what is found again
    rec.run(today())
    assert hq_store.open_differences() == []


def posd(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = cli.main(list(args))
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(name="config_file")
def _config_file(h: RefundHarness, tmp_path: Path, pki: TestPki,
                 alipay_keys: AlipayKeys, sim: Simulator) -> Path:
    (tmp_path / "manager-token").write_text("manager-token-0123456789abcdef")
    (tmp_path / "manager-token").chmod(0o600)
    data = make_config(tmp_path, sim.url, pki, alipay=alipay_keys,
                       api={"manager_token_file": str(tmp_path / "manager-token")})
    path = tmp_path / "config.toml"
    path.write_text(to_toml(data))
    return path


def test_cli_says_all_matched_then_what_differs_and_resolves(
        h: RefundHarness, sim: Simulator, config_file: Path) -> None:
    a_day_of_sales(h)
    day = today().isoformat()
    status, out, err = posd("reconcile", "-c", str(config_file), "--date", day)
    assert status == 0, err
    assert out.rstrip().endswith("all matched") and "ALL MATCHED" in out
    made = sim.edit_bill("alipay", "channel_only", amount=1999)
    status, out, _ = posd("reconcile", "-c", str(config_file), "--date", day, "--format",
                          "json")
    assert status == 1
    data = json.loads(out)
    assert data["version"] == 1 and data["verdict"] == "1 difference(s) remain"
    by_channel = {r["channel"]: r for r in data["reconciliations"]}
    assert by_channel["wechat"]["status"] == "matched"
    (item,) = by_channel["alipay"]["result"]["differences"]
    assert (item["class"], item["out_trade_no"], item["bill_amount"], item["money_taken"]) == (
        "channel_only", made["out_trade_no"], 1999, True)
    status, out, _ = posd("reconcile", "-c", str(config_file), "--date", day, "--format",
                          "csv", "--kept")
    assert status == 1 and made["out_trade_no"] in out
    status, out, _ = posd("reconcile", "-c", str(config_file), "--resolve", str(item["id"]),
                          "--note", "refunded in the merchant platform")
    assert status == 0 and "resolved" in out
    status, out, _ = posd("reconcile", "-c", str(config_file), "--date", day, "--kept")
    assert status == 0 and "resolved: refunded in the merchant platform" in out
    status, _, err = posd("reconcile", "-c", str(config_file), "--resolve", str(item["id"]),
                          "--note", "again")
    assert status == 1 and "resolved already" in err


def test_cli_bill_not_there_yet_is_69(h: RefundHarness, config_file: Path) -> None:
    h.paid("wechat", 5000, 1)
    # today has not ended: no bill yet is not news (the simulator bills only what it has)
    status, out, err = posd("reconcile", "-c", str(config_file), "--date",
                            today().isoformat(), "--channel", "alipay")
    assert status == 69 and "no bill yet for alipay" in out
    # days ago, no bill is no trade that day: posd has none either
    past = (today() - timedelta(days=3)).isoformat()
    status, out, err = posd("reconcile", "-c", str(config_file), "--date", past)
    assert status == 0 and out.rstrip().endswith("all matched")
    status, out, err = posd("reconcile", "-c", str(config_file), "--date", past, "--kept",
                            "--format", "json")
    assert [r["result"]["bill"]["missing"] for r in json.loads(out)["reconciliations"]] == [
        True, True]
    tomorrow = (today() + timedelta(days=1)).isoformat()
    status, _, err = posd("reconcile", "-c", str(config_file), "--date", tomorrow)
    assert status == 65 and "has not begun" in err
    status, _, err = posd("reconcile", "-c", str(config_file), "--channel", "paypal")
    assert status == 65 and "not enabled" in err


# WeChat's bill is not signed (channels.md §1.9; TLS vouches for it): no badsign there.
@pytest.mark.parametrize(("channel", "fault"), [
    (channel, fault) for channel in ("wechat", "alipay")
    for fault in ("drop", "hang", "http500", "http503", "garbage", "badsign")
    if (channel, fault) != ("wechat", "badsign")])
def test_a_download_that_fails_judges_nothing(h: RefundHarness, sim: Simulator,
                                              rec: Reconciler, hq_store: Store,
                                              channel: str, fault: str) -> None:
    h.paid(channel, 5000, 1)
    sim.add_fault(fault, path=BILL_PATH[channel])
    (outcome,) = rec.run(today(), [channel])
    assert outcome.status == "failed" and outcome.result is None, outcome
    assert hq_store.open_differences() == []
    (row,) = hq_store.reconciliations(day=today().isoformat())
    assert row["status"] == "failed" and row["result"] is None
    (outcome,) = rec.run(today(), [channel])  # tried again: the bill now comes whole
    assert outcome.status == "matched"
    assert hq_store.pending_reconciliations(today().isoformat()) == []


def test_wechat_garbage_is_kept_as_bad_file(h: RefundHarness, sim: Simulator,
                                            rec: Reconciler, tmp_path: Path) -> None:
    h.paid("wechat", 5000, 1)
    sim.add_fault("garbage", path=BILL_PATH["wechat"])
    (outcome,) = rec.run(today(), ["wechat"])
    assert outcome.status == "failed" and "cannot be read" in outcome.detail
    assert (tmp_path / "bills" / "wechat" / f"{today()}.bad").exists()


def test_alipay_bill_url_expires_after_30_s(pki: TestPki, alipay_keys: AlipayKeys,
                                            tmp_path: Path) -> None:
    class Ticking(Clock):
        def __call__(self) -> float:
            self.now += 31.0  # every look at the clock is 31 s later
            return self.now

    sim = start_simulator(pki, alipay=alipay_keys, clock=Ticking(time.time()))
    try:
        cfg = config(make_config(tmp_path, sim.url, pki, alipay=alipay_keys, wechat=False))
        client = build_channels(cfg)["alipay"]
        sim.edit_bill("alipay", "channel_only", out_trade_no="S001T01261202000000000001")
        answer = client.download_bill(today())
        assert isinstance(answer, BillFailed) and "30 s" in answer.detail
        assert isinstance(client.download_bill(today() - timedelta(days=400)), NoBill)
        client.close()
    finally:
        sim.stop()


def test_daily_job_runs_yesterday_after_at_and_retries_waiting_days(
        h: RefundHarness, rec: Reconciler, hq_store: Store) -> None:
    clock = Clock(time.time())
    job = DailyReconciliation(rec, at="00:00", retry_every_min=30, clock=clock)
    assert job.due() == []  # the till's first sale is today: nothing before it to check
    h.paid("wechat", 5000, 1)
    clock.now += 86400  # tomorrow, past `at`: today is due, on both channels
    assert job.due() == [("alipay", today()), ("wechat", today())]
    hq_store.record_unreconciled("wechat", today().isoformat(), status="waiting",
                                 run_at=clock.now, detail="no bill yet")
    hq_store.save_reconciliation("alipay", today().isoformat(), status="matched",
                                 run_at=clock.now, result={"differences": []})
    assert job.due() == [("wechat", today())]  # waiting: tried again; matched: not


def test_sim_bill_control_endpoint(sim: Simulator, pki: TestPki, h: RefundHarness) -> None:
    import requests

    def post(body: object) -> requests.Response:
        return requests.post(sim.url + "/_sim/bill", json=body, timeout=5,
                             verify=str(pki.ca_cert_file))

    assert "give out_trade_no" in post({"kind": "channel_only"}).json()["error"]
    sale = h.paid("wechat", 5000, 1)
    made = post({"channel": "wechat", "kind": "channel_only", "amount": 990})
    assert made.status_code == 200
    edit = made.json()["edit"]
    assert edit["out_trade_no"].startswith("S001T01") and edit["amount"] == 990
    assert post({"kind": "amount", "amount": 4999}).json()["edit"]["out_trade_no"] == \
        edit["out_trade_no"]  # default: the latest trade still paid
    assert post({"kind": "missing", "out_trade_no": sale.out_trade_no}).status_code == 200
    for bad, words in (({"kind": "vanish"}, "kind must be"),
                       ({"kind": "amount", "amount": "5"}, "whole number"),
                       ({"kind": "missing", "out_trade_no": "nope"}, "no paid trade"),
                       ({"kind": "amount", "colour": 1}, "unknown bill field")):
        answer = post(bad)
        assert answer.status_code == 400 and words in answer.json()["error"], answer.text


def test_alipay_zip_download_fault_judges_nothing(h: RefundHarness, sim: Simulator,
                                                  rec: Reconciler) -> None:
    h.paid("alipay", 5000, 1)
    sim.add_fault("http500", path="/_bill/alipay/")
    (outcome,) = rec.run(today(), ["alipay"])
    assert outcome.status == "failed" and "HTTP 500" in outcome.detail
    assert rec.run(today(), ["alipay"])[0].status == "matched"
