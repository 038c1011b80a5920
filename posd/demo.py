# SPDX-License-Identifier: MIT
"""``posd demo`` and ``posd simulator``: everything on an embedded default.

The data directory holds a generated sandbox: the WeChat API key, a test PKI (CA, server
and merchant client certificates), Alipay's two RSA2 key pairs under ``alipay/`` (the app's,
which posd signs with, and the simulator's, whose public half posd verifies with), WeChat Pay
v3's merchant key, public key and platform certificate under ``wechat_v3/``, the API
token, ``config.toml``, the database, receipts and ``posd.log``. It is reused when it exists, so a demo can be stopped and started again
with its history; the simulator keeps its port so the config stays true.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import secrets
import signal
import socket
import string
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from posd import config as config_mod
from posd.channels.simulator import (
    AlipayKeys,
    Simulator,
    TestPki,
    WechatSandbox,
    make_alipay_keys,
    make_test_pki,
    run_forever,
)
from posd.channels.wechat_v3.sandbox_keys import WechatV3Keys, make_wechat_v3_keys
from posd.core.errors import PosdError, UnavailableError
from posd.core.money import format_yuan, parse_yuan
from posd.client import Display, seconds_left
from posd.core.sale import Sale, State

log = logging.getLogger(__name__)

SANDBOX_CODES = [
    ("any other", "paid at once"),
    ("...0001", "customer confirms after 8 s"),
    ("...0002", "customer never confirms: deadline, then reverse"),
    ("...0003", "insufficient balance (NOTENOUGH / ACQ.BUYER_BALANCE_NOT_ENOUGH): declined"),
    ("...0004", "code expired (AUTHCODEEXPIRE / ACQ.PAYMENT_AUTH_CODE_INVALID): declined"),
    ("...0005", "pay answers SYSTEMERROR / 20000, the trade is in fact paid"),
    ("...0006", "pay hangs past the read timeout, the trade is in fact paid"),
    ("...0007", "pays at the moment of the reverse/cancel: refunded, reversed"),
    ("...0008", "reverse/cancel answers recall=Y / retry_flag=Y twice, then succeeds"),
]
EXAMPLE_WECHAT = "134567890123450001"
WECHAT_V3_APPID = "wx8888888888888888"
EXAMPLE_ALIPAY = "281234567890120001"
ALIPAY_APP_ID = "2021000000000001"  # the sandbox's app id: any 16 digits


@dataclass(frozen=True)
class Sandbox:
    """The generated files of one sandbox directory."""

    data: Path
    simulator_port: int
    api_port: int
    appid: str
    mch_id: str
    alipay_app_id: str = ALIPAY_APP_ID
    #: ``posd demo --wechat-v3``: WeChat codes go to the v3 channel (the simulator always
    #: serves v3 too)
    wechat_v3: bool = False

    @property
    def config_path(self) -> Path:
        return self.data / "config.toml"

    @property
    def alipay_keys(self) -> AlipayKeys:
        return AlipayKeys.in_directory(self.data / "alipay")

    @property
    def wechat_v3_keys(self) -> WechatV3Keys:
        return make_wechat_v3_keys(self.data / "wechat_v3", reuse=True)

    @property
    def pki(self) -> TestPki:
        return TestPki.in_directory(self.data / "pki")

    def api_key(self) -> str:
        return (self.data / "wechat-api-key").read_text(encoding="ascii").strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_secret(path: Path, text: str) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text, encoding="ascii")


def provision(data: Path, api_port: int | None = None,
              simulator_port: int | None = None, *, wechat_v3: bool = False) -> Sandbox:
    """Create (or reuse) the sandbox in ``data`` and (re)write its config.toml.

    A port given here is kept in ``sandbox.json`` for the next start, so the config stays
    true for the clients that read it.
    """
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o700)
    state_file = data / "sandbox.json"
    state: dict[str, Any] = json.loads(state_file.read_text()) if state_file.exists() else {}
    if "simulator_port" not in state:
        alphabet = string.ascii_letters + string.digits
        _write_secret(data / "wechat-api-key", "".join(secrets.choice(alphabet) for _ in range(32)))
        _write_secret(data / "api-token", secrets.token_urlsafe(24))
        make_test_pki(data / "pki")
        state = {"simulator_port": _free_port(), "api_port": 8637,
                 "appid": "wx2421b1c4370ec43b", "mch_id": "10000100"}
    # Made here rather than with the rest, so a directory from before Alipay gets them too.
    make_alipay_keys(data / "alipay", reuse=True)
    make_wechat_v3_keys(data / "wechat_v3", reuse=True)  # and WeChat Pay v3's
    if not (data / "manager-token").exists():  # so does one from before refunds
        _write_secret(data / "manager-token", secrets.token_urlsafe(24))
    if api_port is not None:
        state["api_port"] = api_port
    if simulator_port:
        state["simulator_port"] = simulator_port
    state_file.write_text(json.dumps(state, indent=2))
    box = Sandbox(data, state["simulator_port"], state["api_port"], state["appid"], state["mch_id"],
                  wechat_v3=wechat_v3)
    _write_config(box)
    return box


@contextlib.contextmanager
def _exclusive(data: Path, what: str) -> Iterator[None]:
    """Hold ``data/lock`` while ``what`` runs: one demo or simulator per directory.

    A second one would rewrite config.toml under the first (another port) and then fail on
    the simulator's port that the first one holds. The lock is flock(2): the kernel drops it
    when the process ends, however it ends.
    """
    data.mkdir(parents=True, exist_ok=True)
    lock: IO[bytes] = (data / "lock").open("ab")
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UnavailableError(
                f"{data} is in use by another posd demo or posd simulator: stop that one "
                f"first, or give this {what} another directory with --data") from None
        yield
    finally:
        lock.close()


def _listen_error(err: OSError, what: str) -> UnavailableError:
    return UnavailableError(f"cannot start the {what}: {err.strerror or err}")


def _write_config(box: Sandbox) -> None:
    d = box.data.resolve()
    v3 = box.wechat_v3_keys
    box.config_path.write_text(f"""\
# Generated by `posd demo`; rewritten at every start (edit sandbox.json for ports).
[store]
id = "DEMO"
name = "posd 演示店 Demo Shop"
terminal_id = "T01"
address = "1 Sandbox Road"

[payment]
deadline_s = 30

[database]
path = "{d}/posd.db"

[api]
listen = "127.0.0.1:{box.api_port}"
token_file = "{d}/api-token"
manager_token_file = "{d}/manager-token"

[channels.wechat]
base_url = "https://127.0.0.1:{box.simulator_port}"
appid = "{box.appid}"
mch_id = "{box.mch_id}"
api_key_file = "{d}/wechat-api-key"
sign_type = "HMAC-SHA256"
cert_file = "{box.pki.client_cert_file.resolve()}"
key_file = "{box.pki.client_key_file.resolve()}"
ca_file = "{box.pki.ca_cert_file.resolve()}"
read_timeout_s = 10.0

[channels.alipay]
gateway_url = "https://127.0.0.1:{box.simulator_port}/gateway.do"
app_id = "{box.alipay_app_id}"
app_private_key_file = "{box.alipay_keys.app_private_key_file.resolve()}"
alipay_public_key_file = "{box.alipay_keys.alipay_public_key_file.resolve()}"
ca_file = "{box.pki.ca_cert_file.resolve()}"
read_timeout_s = 10.0

[channels.wechat_v3]
enabled = {"true" if box.wechat_v3 else "false"}   # posd demo --wechat-v3: WeChat codes go to v3
base_url = "https://127.0.0.1:{box.simulator_port}"
appid = "{WECHAT_V3_APPID}"
mchid = "{box.mch_id}"
merchant_serial_no = "{v3.merchant_serial_no}"
private_key_file = "{v3.merchant_key_file.resolve()}"
wechatpay_public_key_file = "{v3.public_key_file.resolve()}"
wechatpay_public_key_id = "{v3.public_key_id}"
platform_cert_files = ["{v3.platform_cert_file.resolve()}"]
ca_file = "{box.pki.ca_cert_file.resolve()}"
read_timeout_s = 10.0

[scanner]
kind = "console"

[printer]
kind = "console"
receipt_dir = "{d}/receipts"
""", encoding="utf-8")


def make_simulator(box: Sandbox, **options: Any) -> Simulator:
    """The sandbox's channel simulator (HTTPS with its test PKI), not started yet."""
    return Simulator(
        wechat=WechatSandbox(appid=box.appid, mch_id=box.mch_id, api_key=box.api_key()),
        alipay=make_alipay_keys(box.alipay_keys.directory, reuse=True).sandbox(box.alipay_app_id),
        # WeChat Pay v3 on the same merchant account (one ledger), both key modes
        sandboxes={"wechat_v3": box.wechat_v3_keys.sandbox(WECHAT_V3_APPID, box.mch_id,
                                                           mode="both")},
        port=box.simulator_port,
        tls=make_test_pki(box.pki.directory, reuse=True).server_tls(),
        # Kept on disk: a sale resumed after the demo restarts finds its trade.
        ledger_file=box.data / "simulator-ledger.json",
        **options,
    )


def start_simulator(box: Sandbox, **options: Any) -> Simulator:
    return make_simulator(box, **options).start()


def _banner(box: Sandbox, api_port: int, sim: Simulator) -> str:
    rows = "\n".join(f"    {ends:10} {what}" for ends, what in SANDBOX_CODES)
    posd = _posd_command()
    return f"""
posd demo — everything runs on this machine; no real money moves.
  API        http://127.0.0.1:{api_port}   (OpenAPI at /docs)
  API token  {box.data / 'api-token'}   (manager's, for refunds: {box.data / 'manager-token'})
  config     {box.config_path}
  simulator  {sim.url}   (WeChat Pay v2, mutual TLS on /secapi/;
             WeChat Pay v3 at /v3/ ({"WeChat codes go to v3" if box.wechat_v3 else
                                    "posd demo --wechat-v3 sends WeChat codes there"});
             Alipay at /gateway.do, RSA2)
  log        {box.data / 'posd.log'}

Sandbox payment codes (WeChat: 18 digits starting 10-15, e.g. {EXAMPLE_WECHAT};
Alipay: 16-24 digits starting 25-30, e.g. {EXAMPLE_ALIPAY}), by their last four digits:
{rows}
From another terminal:  {posd} charge 12.50 --code {EXAMPLE_WECHAT} -c {box.config_path}
                        {posd} charge 12.50 --code {EXAMPLE_ALIPAY} -c {box.config_path}
Refunds (manager's token), by the last two digits of the amount in fen: 01 processing then
refunded, 02 the bank refuses (needs attention), 03 shop balance too low (failed), 05/06
error or hang but refunded, else refunded at once:
                        {posd} refunds -c {box.config_path}
                        {posd} refund SALE_ID 2.01 --reason "returned" -c {box.config_path}
Reconciliation against the simulator's bills (it serves today's too; docs/reconciliation.md):
                        {posd} reconcile --date {_beijing_today()} -c {box.config_path}
  put a difference in:  curl --cacert {box.pki.ca_cert_file} -d '{{"kind": "channel_only"}}' \
                             {sim.url}/_sim/bill
"""


def _beijing_today() -> str:
    from posd.core.reconcile import beijing_day

    return beijing_day(time.time()).isoformat()


class _EchoLine(Display):
    def line(self, sale: Any) -> str:
        text = f"  sale {sale['id']} [{sale['state']}] {sale['message']}"
        left = seconds_left(sale, self._clock())
        return text if left is None else f"{text} ({left} s before posd reverses it)"


class StateEcho:
    """Engine listener: the sale's state as it changes. On a terminal one line redrawn in
    place, with the seconds left before the reverse; otherwise a plain line per change.

    The console waits on it (:meth:`wait_final`) so that its next prompt comes after the
    final line and the receipt, not in the middle of them; meanwhile it redraws the line
    every second so that the countdown moves.
    """

    def __init__(self, stream: IO[str] | None = None, *, live: bool | None = None) -> None:
        self._display = _EchoLine(stream or sys.stdout, live=live)
        self._latest: dict[int, Sale] = {}
        self._final = threading.Condition()
        self._finals: set[int] = set()

    def __call__(self, sale: Sale) -> None:
        """Registered first: the line is drawn before the receipt prints."""
        with self._final:
            self._latest[sale.id] = sale
            self._display.show(_shown(sale))
            if sale.final:
                self._display.done()

    def after(self, sale: Sale) -> None:
        """Registered last: a final sale is done once every other listener (the receipt)
        has run, and the console's next prompt may come."""
        if sale.final:
            with self._final:
                self._finals.add(sale.id)
                self._final.notify_all()

    def wait_final(self, sale_id: int, stopped: threading.Event) -> bool:
        """Block until sale ``sale_id`` was shown final (True) or ``stopped`` is set (False)."""
        with self._final:
            while sale_id not in self._finals:
                if stopped.is_set():
                    self._display.done()
                    return False
                # stop() does not notify this condition: look at the event every second,
                # and move the countdown meanwhile.
                self._final.wait(1.0)
                sale = self._latest.get(sale_id)
                if sale is not None and not sale.final:
                    self._display.show(_shown(sale))
            return True


def _shown(sale: Sale) -> dict[str, Any]:
    return {"id": sale.id, "state": sale.state.value, "message": sale.message,
            "deadline_at": sale.deadline_at}


def _posd_command() -> str:
    """How to run posd from another terminal: the venv's own script (``.venv/bin/posd``
    after ``make demo``), relative to here when it is below, else ``python -m posd``."""
    script = Path(sys.executable).parent / "posd"
    if not script.exists():
        return f"{sys.executable} -m posd"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def run_demo(data: Path, api_port: int | None = None, *, wechat_v3: bool = False) -> int:
    with _exclusive(data, "demo"):
        return _run_demo(data, api_port, wechat_v3)


def _run_demo(data: Path, api_port: int | None, wechat_v3: bool = False) -> int:
    from posd.logs import setup_logging
    from posd.daemon import Daemon

    box = provision(data, api_port, wechat_v3=wechat_v3)
    interactive = sys.stdin is not None and sys.stdin.isatty()
    # At the console every log line goes to the file, none over the cashier's prompt.
    setup_logging(logging.WARNING, box.data / "posd.log",
                  stderr_level=logging.CRITICAL + 1 if interactive else None)
    config = config_mod.load(box.config_path)
    try:
        sim = start_simulator(box)
    except OSError as err:
        raise _listen_error(err, f"channel simulator on its port {box.simulator_port} (kept "
                            f"in {box.data / 'sandbox.json'})") from err
    try:
        daemon = Daemon.build(config, receipts_to=sys.stdout)
        echo = StateEcho()
        daemon.engine.add_listener(echo, first=True)  # the final line before the receipt
        daemon.engine.add_listener(echo.after)  # the next prompt after it
        _stop_on_signals(daemon)
        try:
            daemon.start(scanner_stream=None)
        except OSError as err:
            daemon.stop()
            raise _listen_error(err, "API (choose another port with --port)") from err
        print(_banner(box, daemon.api.port, sim), flush=True)
        if interactive:
            thread = threading.Thread(target=_console, args=(daemon, echo), daemon=True,
                                      name="console")
            thread.start()
        else:
            print("stdin is not a terminal: serving the API only (Ctrl-C or SIGTERM stops).",
                  flush=True)
        # serve() would start the daemon again; here we only wait and stop (and freeze
        # start-up's objects, as serve() does: posd/memory.py).
        from posd import memory

        memory.freeze_startup()
        status = daemon.wait()
        print("\nstopping: in-flight sales are finished or kept for the next start", flush=True)
        daemon.stop()
        return int(status)
    finally:
        sim.stop()


def _stop_on_signals(daemon: Any) -> None:
    """SIGTERM and SIGINT (Ctrl-C) stop the demo cleanly, also while it is starting."""
    def request_stop(_signum: int, _frame: object) -> None:
        daemon.stopped.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


def _console(daemon: Any, echo: StateEcho) -> None:
    """Prompt for an amount, then read the customer's code; repeat."""
    engine = daemon.engine
    try:
        while not daemon.stopped.is_set():
            text = input("\nAmount in yuan (e.g. 12.50), or a code for a sale made by the register: ")
            text = text.strip()
            if not text:
                continue
            if text.isdigit() and len(text) >= 16:
                _scan(engine, text)
                continue
            try:
                sale, _ = engine.create_sale(parse_yuan(text))
            except PosdError as err:  # a bad amount; or posd is stopping
                print(f"  {err}", flush=True)
                continue
            print(f"  sale {sale.id}: {format_yuan(sale.amount)} yuan — scan or type the "
                  "customer's code (c cancels the sale)")
            _take_code(daemon, echo, sale)
    except EOFError:
        print("\nend of input")
    except PosdError as err:  # the store closed under us (stopping) or became unusable
        if not daemon.stopped.is_set():
            log.error("console stopped: %s", err)
            print(f"\n  console stopped: {err}", flush=True)
    daemon.stopped.set()


def _take_code(daemon: Any, echo: StateEcho, sale: Sale) -> None:
    """Read codes until one is taken or the cashier cancels. A misscan (an empty line, a
    product barcode, a short code) is refused with its sentence and the sale keeps waiting:
    it is never cancelled for a bad scan (DESIGN §2 rule 7)."""
    engine = daemon.engine
    while not daemon.stopped.is_set():
        code = input("Payment code: ").strip()
        current = engine.get(sale.id)
        if current.state is not State.AWAITING_CODE:  # expired, or the register cancelled it
            print(f"  sale {sale.id} is {current.state}: {current.message}", flush=True)
            return
        if code.lower() in ("c", "cancel"):
            engine.cancel(sale.id)
            return
        if _scan(engine, code) is not None:
            echo.wait_final(sale.id, daemon.stopped)
            return
        print(f"  sale {sale.id} is still waiting: scan the customer's code again "
              "(c cancels the sale)", flush=True)


def _scan(engine: Any, code: str) -> Sale | None:
    outcome = engine.scan(code, time.monotonic(), "console")
    if not outcome.accepted:
        print(f"  refused: {outcome.reason}", flush=True)
        return None
    return outcome.sale  # type: ignore[no-any-return]


def run_simulator(data: Path, port: int) -> int:
    """``posd simulator``: the channel simulator alone, with the sandbox's keys.

    ``port`` 0 keeps the port of ``data`` (a free one the first time); another port is kept
    from now on, so ``data/config.toml`` stays true for a posd that uses it.
    """
    with _exclusive(data, "simulator"):
        box = provision(data, simulator_port=port or None)
        try:
            run_forever(make_simulator(box), on_ready=lambda sim: _simulator_banner(box, sim))
        except OSError as err:
            raise _listen_error(err, f"channel simulator on port {box.simulator_port}") from err
    return 0


def _simulator_banner(box: Sandbox, sim: Simulator) -> None:
    rows = "\n".join(f"    {ends:10} {what}" for ends, what in SANDBOX_CODES)
    print(f"""channel simulator listening on {sim.url}
  WeChat Pay v2  appid {box.appid}, mch_id {box.mch_id}
  API key file   {box.data / 'wechat-api-key'}
  CA to trust    {box.pki.ca_cert_file}
  client cert    {box.pki.client_cert_file} + {box.pki.client_key_file} (for /secapi/)
  WeChat Pay v3  {sim.url}/v3/, appid {WECHAT_V3_APPID}, mchid {box.mch_id}, merchant key
                 {box.wechat_v3_keys.merchant_key_file} (serial {box.wechat_v3_keys.merchant_serial_no})
  Alipay         {sim.url}/gateway.do, app_id {box.alipay_app_id}
  app key        {box.alipay_keys.app_private_key_file} (posd signs with it)
  Alipay key     {box.alipay_keys.alipay_public_key_file} (posd verifies with it)
  posd config    {box.config_path}
  control        {sim.url}/_sim/  (ledger, faults, script, reset)

Sandbox payment codes (WeChat: 18 digits starting 10-15, e.g. {EXAMPLE_WECHAT};
Alipay: 16-24 digits starting 25-30, e.g. {EXAMPLE_ALIPAY}), by their last four digits:
{rows}
Ctrl-C or SIGTERM stops.""", flush=True)
