# SPDX-License-Identifier: MIT
"""The ``posd`` command: argument parsing, exit codes and logging set-up (only here).

Exit codes (sysexits.h where one fits): 0 success (for ``charge``: paid); 1 not paid
(declined, reversed, cancelled); 2 usage; 3 the sale needs attention; 65 bad input;
69 the daemon cannot be reached; 78 bad configuration.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from posd import __version__
from posd.logs import setup_logging
from posd.core.errors import ConfigError, InputError, PosdError

log = logging.getLogger("posd")

EX_OK, EX_NOT_PAID, EX_USAGE, EX_ATTENTION = 0, 1, 2, 3
EX_DATAERR, EX_UNAVAILABLE, EX_CONFIG = 65, 69, 78


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="posd", description="Payment-code (付款码) terminal daemon.")
    p.add_argument("--version", action="version", version=f"posd {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        return sp

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("-c", "--config", help="config file (default: $POSD_CONFIG, "
                        "else /etc/posd/config.toml)")
        return sp

    with_config(add("run", "Run the daemon in the foreground (systemd runs this)."))
    demo = add("demo", "Run posd with the channel simulator on a generated sandbox config.")
    demo.add_argument("--data", default="posd-demo", help="data directory (default ./posd-demo)")
    demo.add_argument("--port", type=int, help="API port (default 8637)")
    demo.add_argument("--wechat-v3", action="store_true",
                      help="take WeChat codes over WeChat Pay API v3 (codepay) instead of v2")
    charge = with_config(add("charge", "Take a payment through the running daemon; "
                             "exits 0 only if paid."))
    charge.add_argument("amount", help="amount in yuan, e.g. 12.50")
    charge.add_argument("--code", help="payment code (default: the next scan)")
    charge.add_argument("--order", help="the register's order reference")
    charge.add_argument("--json", action="store_true", help="print the final sale as JSON")
    cancel = with_config(add("cancel", "Cancel a sale (reverses it if a code was sent)."))
    cancel.add_argument("sale_id", type=int)
    refund = with_config(add("refund", "Refund all or part of a paid sale (manager token); "
                             "exit 0 only when refunded."))
    refund.add_argument("sale_id", type=int)
    refund.add_argument("amount", nargs="?", help="yuan, e.g. 12.50 (default: all that is left)")
    refund.add_argument("--reason", required=True, help="why (kept, sent to the channel)")
    refund.add_argument("--json", action="store_true", help="print the final refund as JSON")
    refunds = with_config(add("refunds", "List refunds."))
    refunds.add_argument("--date", help="YYYY-MM-DD (default today)")
    refunds.add_argument("--json", action="store_true")
    resolve = with_config(add("resolve", "Record how a sale that needs attention ended "
                              "(manager token)."))
    resolve.add_argument("sale_id", type=int)
    resolve.add_argument("--as", dest="as_", required=True, choices=["paid", "reversed"])
    resolve.add_argument("--note", required=True, help="what you checked, and where")
    sales = with_config(add("sales", "List sales."))
    sales.add_argument("--date", help="YYYY-MM-DD (default: today)")
    sales.add_argument("--json", action="store_true")
    sim = add("simulator", "Run the channel simulator alone (for register developers' tests).")
    sim.add_argument("--port", type=int, default=0,
                     help="port (default: the one kept in DIR; a free one the first time)")
    sim.add_argument("--data", default="posd-sim",
                     help="directory for the sandbox keys and certificates (default ./posd-sim)")
    config = add("config", "Configuration commands.")
    csub = config.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    with_config(csub.add_parser("check", help="Validate a config file; exit 78 on error.",
                                description="Validate a config file; exit 78 on error."))
    _add_sync_commands(add, with_config)
    _add_operations_commands(add, with_config)
    _add_paper_commands(add, with_config)
    return p


def _add_sync_commands(add: Callable[[str, str], argparse.ArgumentParser],
                       with_config: Callable[[argparse.ArgumentParser],
                                             argparse.ArgumentParser]) -> None:
    sync = with_config(add("sync", "Push the outbox to HQ now, or show what is waiting."))
    sync.add_argument("--status", action="store_true",
                      help="show the backlog (count, amount, oldest) and rejected records")
    sync.add_argument("--retry-rejected", action="store_true",
                      help="send the records HQ rejected again (e.g. after HQ was upgraded)")
    sync.add_argument("--json", action="store_true", help="with --status: print JSON")
    hq = add("hq", "The reference HQ receiver.")
    hsub = hq.add_subparsers(dest="hq_command", required=True, metavar="SUBCOMMAND")
    help_ = "Receive terminals' records and serve per store/day totals."
    serve_ = hsub.add_parser("serve", help=help_, description=help_)
    serve_.add_argument("--listen", default="127.0.0.1:8640", help="HOST:PORT (default "
                        "127.0.0.1:8640; port 0 picks a free one)")
    serve_.add_argument("--db", default="posd-hq.db", help="a postgresql:// URL, or a SQLite "
                        "file (default ./posd-hq.db)")
    serve_.add_argument("--token-file", default="/etc/posd/hq-token",
                        help="the terminals' bearer token (default /etc/posd/hq-token)")
    serve_.add_argument("--hmac-key-file", help="the signature key (default: the token)")
    serve_.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    serve_.add_argument("--tls-key", help="... and this private key (PEM)")


def _add_operations_commands(add: Callable[[str, str], argparse.ArgumentParser],
                             with_config: Callable[[argparse.ArgumentParser],
                                                   argparse.ArgumentParser]) -> None:
    doctor = with_config(add("doctor", "Check config, key files, database, disk, scanner, "
                             "printer, channels, clock and HQ; exit 1 if a check fails."))
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")
    backup = with_config(add("backup", "Copy the live database with SQLite's online backup "
                             "API (safe while posd runs)."))
    backup.add_argument("dest", help="a new file, or a directory for posd-YYYYMMDD-HHMMSS.db")


def _add_paper_commands(add: Callable[[str, str], argparse.ArgumentParser],
                        with_config: Callable[[argparse.ArgumentParser],
                                              argparse.ArgumentParser]) -> None:
    def wait(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--wait", type=float, default=15.0, metavar="S", help="with --print: "
                        "wait up to S seconds for the daemon to print it (default 15)")

    report = add("report", "Daily summaries: the Z-report (an X-report for the day so far).")
    rsub = report.add_subparsers(dest="report_command", required=True, metavar="SUBCOMMAND")
    help_ = "The business day's counts and totals per channel, and the sales to check."
    daily = with_config(rsub.add_parser("daily", help=help_, description=help_))
    daily.add_argument("--date", help="business day YYYY-MM-DD (default: the current one)")
    daily.add_argument("--format", choices=("text", "json", "csv"), default="text")
    daily.add_argument("--print", action="store_true", help="also print it on the printer")
    wait(daily)
    help_ = ("Compare the channels' daily bills with posd's records; exit 0 all matched, "
             "1 differences remain, 69 bill not available yet.")
    rec = with_config(add("reconcile", help_))
    rec.add_argument("--date", help="the bill day YYYY-MM-DD, Beijing time (default: yesterday)")
    rec.add_argument("--channel", help="one channel (default: every enabled one)")
    rec.add_argument("--format", choices=("text", "json", "csv"), default="text")
    rec.add_argument("--print", action="store_true", help="also print it on the printer")
    rec.add_argument("--kept", action="store_true",
                     help="show the kept result; do not ask the channels again")
    rec.add_argument("--resolve", type=int, metavar="ID",
                     help="record what was done about difference ID (needs --note)")
    rec.add_argument("--note", help="with --resolve: what you did, and where")
    wait(rec)
    receipt = with_config(add("receipt", "Show a sale's receipt; --print reprints it."))
    receipt.add_argument("sale_id", type=int)
    receipt.add_argument("--print", action="store_true", help="reprint it (marked REPRINT)")
    receipt.add_argument("--png", metavar="FILE", help="also draw it into a PNG file")
    wait(receipt)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = _HANDLERS[{"config": "config check", "hq": "hq serve"}.get(args.command,
                                                                         args.command)]
    try:
        return handler(args)
    except ConfigError as err:
        print(f"posd: configuration error: {err}", file=sys.stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `posd sales --json | head`: the reader has gone, which is not an error to report.
        # stdout is pointed at /dev/null so that the interpreter's final flush is quiet too
        # (the Python docs' recipe, "Note on SIGPIPE"); 141 is what a shell shows for it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except InputError as err:
        print(f"posd: {err}", file=sys.stderr)
        return EX_DATAERR
    except PosdError as err:
        print(f"posd: {err}", file=sys.stderr)
        return int(getattr(err, "exit_code", 1))
    except OSError as err:  # e.g. the API port is in use: a sentence, not a traceback
        print(f"posd: {err.strerror if err.filename is None and err.strerror else err}",
              file=sys.stderr)
        return 1


def _load(args: argparse.Namespace) -> Any:
    from posd import config

    return config.load(config.find_path(args.config))


def cmd_config_check(args: argparse.Namespace) -> int:
    from posd import config

    path = config.find_path(args.config)
    config.load(path)
    print(f"{path}: ok")
    return EX_OK


def serve(daemon: Any, *, scanner_stream: Any = None) -> int:
    """Start the daemon, block until SIGTERM/SIGINT or a fatal error, stop cleanly."""
    def request_stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping (in-flight sales are finished or kept for restart)", signum)
        daemon.stopped.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        daemon.start(scanner_stream=scanner_stream)
    except BaseException:
        daemon.stop()  # e.g. the API port is in use: end the sales resumed meanwhile cleanly
        raise
    from posd import memory

    memory.freeze_startup()  # no 70 ms full collections of start-up's objects: posd/memory.py
    status = daemon.wait()
    daemon.stop()
    return int(status)


def cmd_run(args: argparse.Namespace) -> int:
    from posd import memory

    memory.limit_arenas()  # before any thread: posd/memory.py
    from posd.daemon import Daemon
    from posd.notify import Notifier

    setup_logging()
    config = _load(args)
    _log_as_configured(config)
    daemon = Daemon.build(config, notifier=Notifier.from_environ())
    return serve(daemon, scanner_stream=sys.stdin if config.scanner.kind == "console" else None)


def _log_as_configured(config: Any) -> None:
    """``[log]``: level, stderr format, JSON-lines file (an unusable file is a config error)."""
    from posd.logs import log_uncaught, use_code_rules

    log_uncaught()
    use_code_rules(config.codes.prefix_rules)
    level = logging.getLevelNamesMapping()[config.log.level.upper()]
    try:
        setup_logging(level, json_stderr=config.log.format == "json",
                      json_file=config.log.json_file)
    except OSError as err:
        setup_logging()
        raise ConfigError(f"log.json_file: {config.log.json_file}: "
                          f"{err.strerror or err}") from err


def cmd_demo(args: argparse.Namespace) -> int:
    from posd.demo import run_demo

    return run_demo(Path(args.data), api_port=args.port, wechat_v3=args.wechat_v3)


def cmd_simulator(args: argparse.Namespace) -> int:
    from posd.demo import run_simulator

    setup_logging()
    return run_simulator(Path(args.data), args.port)


def _client(args: argparse.Namespace) -> Any:
    from posd.client import ApiClient

    return ApiClient.from_config(_load(args))


def cmd_charge(args: argparse.Namespace) -> int:
    from posd.client import charge

    return charge(_client(args), args.amount, code=args.code, order=args.order,
                  as_json=args.json)


def cmd_cancel(args: argparse.Namespace) -> int:
    sale = _client(args).cancel(args.sale_id)
    print(f"sale {sale['id']}: {sale['state']} - {sale['message']}")
    return EX_OK


def cmd_refund(args: argparse.Namespace) -> int:
    from posd.client import ApiClient, refund

    client = ApiClient.from_config(_load(args), manager=True)
    return refund(client, args.sale_id, args.amount, args.reason, as_json=args.json)


def cmd_refunds(args: argparse.Namespace) -> int:
    from posd.client import print_refunds

    refunds = _client(args).list_refunds(date=args.date)
    if args.json:
        print(json.dumps(refunds, ensure_ascii=False, indent=2))
    else:
        print_refunds(refunds)
    return EX_OK


def cmd_resolve(args: argparse.Namespace) -> int:
    from posd.client import ApiClient

    sale = ApiClient.from_config(_load(args), manager=True).resolve(args.sale_id, args.as_,
                                                                     args.note)
    print(f"sale {sale['id']}: {sale['state']} - {sale['message']}")
    return EX_OK


def cmd_sales(args: argparse.Namespace) -> int:
    from posd.client import print_sales

    sales = _client(args).list_sales(date=args.date)
    if args.json:
        print(json.dumps(sales, ensure_ascii=False, indent=2))
    else:
        print_sales(sales)
    return EX_OK


def cmd_sync(args: argparse.Namespace) -> int:
    from posd.sync import sync_command

    return sync_command(_load(args), status=args.status, retry_rejected=args.retry_rejected,
                        as_json=args.json)


def cmd_hq_serve(args: argparse.Namespace) -> int:
    from posd.hq.server import read_secrets, serve

    setup_logging()
    secrets = read_secrets(Path(args.token_file),
                           Path(args.hmac_key_file) if args.hmac_key_file else None)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    tls = (Path(args.tls_cert), Path(args.tls_key)) if args.tls_cert else None
    return serve(args.listen, args.db, secrets, tls=tls)


def cmd_report(args: argparse.Namespace) -> int:
    from posd.print_commands import report_command

    return report_command(_load(args), day=args.date, fmt=args.format, to_printer=args.print,
                          wait_s=args.wait)


def cmd_reconcile(args: argparse.Namespace) -> int:
    from posd.reconcile_command import reconcile_command, resolve_command

    if args.resolve is not None:
        if not args.note:
            raise InputError("--resolve needs --note: say what was done about it")
        return resolve_command(_load(args), args.resolve, args.note)
    setup_logging(logging.WARNING)  # the result is the output; the clients' INFO lines are not
    return reconcile_command(_load(args), day=args.date, channel=args.channel, fmt=args.format,
                             to_printer=args.print, wait_s=args.wait, kept=args.kept)


def cmd_receipt(args: argparse.Namespace) -> int:
    from posd.print_commands import receipt_command

    return receipt_command(_load(args), args.sale_id, to_printer=args.print,
                           png=Path(args.png) if args.png else None, wait_s=args.wait)


def cmd_doctor(args: argparse.Namespace) -> int:
    from posd import config
    from posd.doctor import doctor_command

    setup_logging(logging.WARNING)  # the table is the output; the clients' INFO lines are not
    return doctor_command(config.find_path(args.config), as_json=args.json)


def cmd_backup(args: argparse.Namespace) -> int:
    from posd.backup import make_backup

    made = make_backup(_load(args).database.path, Path(args.dest))
    print(f"{made.path}: {made.sales} sales, {made.size:,} bytes, integrity ok "
          f"({made.seconds:.1f} s)")
    return EX_OK


_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "demo": cmd_demo,
    "charge": cmd_charge,
    "cancel": cmd_cancel,
    "refund": cmd_refund,
    "refunds": cmd_refunds,
    "resolve": cmd_resolve,
    "sales": cmd_sales,
    "simulator": cmd_simulator,
    "config check": cmd_config_check,
    "sync": cmd_sync,
    "hq serve": cmd_hq_serve,
    "report": cmd_report,
    "receipt": cmd_receipt,
    "reconcile": cmd_reconcile,
    "doctor": cmd_doctor,
    "backup": cmd_backup,
}
