# SPDX-License-Identifier: MIT
"""``posd doctor``'s checks of what is outside the box's disk: scanners, the printer, the
payment channels, the clock and HQ (see :mod:`posd.doctor`). [shell]

Each opens what it checks for a moment and closes it again; none moves money or prints.
"""

from __future__ import annotations

import contextlib
import grp
import os
import stat
import time
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import requests

from posd.channels import registry
from posd.channels.spec import Till
from posd.checks import Check, fail, ok, skip, warn
from posd.config import Config, PrinterConfig, ScannerConfig
from posd.config_base import read_secret
from posd.core.errors import ConfigError, DeviceError

#: The clock may be this far from the servers' before posd doctor warns / fails.
CLOCK_WARN_S, CLOCK_FAIL_S = 10.0, 120.0


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


# --- scanners ----------------------------------------------------------------------------------


def check_scanners(config: Config, health: Mapping[str, Any] | None) -> list[Check]:
    """One row per configured scanner; from the running daemon's view when it holds them."""
    scanners = config.all_scanners
    if not scanners:
        return [skip("scanner", "not configured (scanner.kind = none)")]
    return [_scanner(label, scanner, (health or {}).get(label)) for label, scanner in scanners]


def _scanner(label: str, scanner: ScannerConfig, seen: Mapping[str, Any] | None) -> Check:
    if scanner.kind == "console":
        return ok(label, "console: codes are read from posd run's standard input")
    if seen is not None:  # the daemon has it open (and grabbed): do not fight it for it
        if seen.get("connected"):
            grabbed = ", grabbed" if seen.get("grabbed") else ""
            return ok(label, f"{seen.get('device')}: read by the running posd{grabbed}")
        return fail(label, f"the running posd cannot read it: {seen.get('last_error')}",
                    _SCANNER_FIX[scanner.kind])
    problem = _probe_hid(scanner) if scanner.kind == "hid" else _probe_serial(scanner)
    if problem is not None:
        return fail(label, problem, _SCANNER_FIX[scanner.kind])
    # A pyserial URL (socket://, rfc2217://) has no device node to look at.
    device = scanner.device or ""
    node = os.path.realpath(device) if device and "://" not in device else ""
    group = "input" if scanner.kind == "hid" else "dialout"
    if node and (why := _group_problem(Path(node), group)):
        return warn(label, f"{scanner.device}: opened, but {why}",
                    "install systemd/60-posd.rules (docs/install.md) and re-plug the scanner")
    what = "present, readable and grabbable" if scanner.kind == "hid" else "present, opened"
    return ok(label, f"{scanner.device or 'matched device'}: {what}")


_SCANNER_FIX = {
    "hid": "plug it in; ls -l /dev/input/by-id/ shows its link; the user posd needs group "
           "input (systemd/posd.service: SupplementaryGroups=); a second holder of the grab "
           "shows with fuser -v (docs/hardware.md)",
    "serial": "plug it in; ls -l /dev/serial/by-id/ shows its link; the user posd needs group "
              "dialout; ModemManager must ignore it (systemd/60-posd.rules)",
}


def _group_problem(node: Path, group: str) -> str | None:
    """Why the service (group ``group``) could not open ``node``, or None."""
    try:
        info = node.stat()
    except OSError:
        return None  # gone since it was opened: the next run says so
    if group_name(info.st_gid) == group and info.st_mode & stat.S_IRGRP and (
            info.st_mode & stat.S_IWGRP):
        return None
    mode = stat.S_IMODE(info.st_mode)
    return f"{node} is group {group_name(info.st_gid)} mode {mode:04o}, not group {group} rw"


def _probe_hid(scanner: ScannerConfig) -> str | None:
    from posd.devices.scanners import find_key_device, grab_problem, require_evdev

    try:
        require_evdev()
        device = find_key_device(scanner)
    except (ConfigError, DeviceError) as err:
        return str(err)
    try:
        if scanner.grab:
            device.grab()  # released by close()
    except OSError as err:
        return grab_problem(os.fsdecode(device.path), err)
    finally:
        device.close()
    return None


def _probe_serial(scanner: ScannerConfig) -> str | None:
    import serial

    from posd.devices.scanners import serial_problem

    try:
        port = serial.serial_for_url(scanner.device, baudrate=scanner.baudrate, timeout=0,
                                     exclusive=True)
    except (OSError, ValueError) as err:  # SerialException is an OSError
        return serial_problem(scanner.device or "", err)
    port.close()
    return None


# --- printer -------------------------------------------------------------------------------------


def check_printer(config: Config) -> Check:
    from posd.core.print_jobs import DESCRIPTIONS, Status
    from posd.devices.printers import keep_profiles_beside_database, open_printer

    printer = config.printer
    if printer.kind == "none":
        return skip("printer", "not configured (printer.kind = none)")
    if printer.kind == "console":
        return ok("printer", "console: receipts go to posd run's standard output")
    if printer.kind == "file":  # opening it for writing would truncate a plain file
        return _file_printer(printer)
    keep_profiles_beside_database(config)
    try:
        device = open_printer(printer, None, config.receipt.line_columns)
        session = device.open()
    except (ConfigError, DeviceError) as err:
        return fail("printer", f"unreachable: {err}", _printer_fix(printer))
    try:
        status = session.status()
    except DeviceError as err:
        return fail("printer", str(err), _printer_fix(printer))
    finally:
        session.close()
    detail = f"{device.describe}: {DESCRIPTIONS[status]}"
    if status in (Status.OK, Status.UNKNOWN):
        return ok("printer", detail)
    if status in (Status.PAPER_LOW, Status.NO_ANSWER):
        return warn("printer", detail, "load paper soon; a printer that never answers status "
                    "queries: printer.status_query = false")
    return fail("printer", detail, "load paper, close the cover, switch it on line; "
                "queued receipts print once it is ready")


def _file_printer(printer: PrinterConfig) -> Check:
    path = Path(printer.device)
    if not path.exists():
        return fail("printer", f"{path}: not present", _printer_fix(printer))
    if not os.access(path, os.W_OK):
        return fail("printer", f"{path}: not writable", _printer_fix(printer))
    return ok("printer", f"file {path}: present and writable (a file cannot tell its status)")


def _printer_fix(printer: PrinterConfig) -> str:
    return {
        "network": f"power and cable; the printer's IP must be {printer.host} (print its self-"
                   f"test page) and port {printer.port} reachable from this box",
        "usb": "plug it in; lsusb must show the ids; the user posd needs group lp through "
               "systemd/60-posd.rules (docs/install.md)",
        "serial": "plug it in; the user posd needs group dialout",
        "file": "the device file must exist and be writable by group lp",
    }.get(printer.kind, "see docs/printing.md")


# --- channels -----------------------------------------------------------------------------------


def check_channels(config: Config) -> list[Check]:
    """Each enabled channel's own rows (its package's ``doctor``): a signed probe query,
    certificates."""
    till = Till(config.store.id, config.store.terminal_id, config.store.name)
    return [check for name, section in config.channels.sections().items()
            for check in registry.get(name).doctor(section, till)]


# --- clock and HQ ---------------------------------------------------------------------------------


def _endpoints(config: Config) -> list[tuple[str, str | bool]]:
    """(URL, verify) of each server posd talks to, to read their clocks."""
    found = [endpoint for section in config.channels.sections().values()
             if (endpoint := section.endpoint()) is not None]
    if config.hq.url:
        found.append((config.hq.url + "/v1/health",
                      str(config.hq.ca_file) if config.hq.ca_file else True))
    return found


def server_skew(url: str, verify: str | bool) -> float | None:
    """Local clock minus the server's (its HTTP Date header), in seconds; None: no answer."""
    with requests.Session() as http:
        http.trust_env = False
        before = time.time()
        try:
            response = http.get(url, timeout=(3.0, 5.0), verify=verify, stream=True,
                                allow_redirects=False)
        except requests.RequestException:
            return None
        after = time.time()
        response.close()
    date = response.headers.get("Date")
    if not date:
        return None
    with contextlib.suppress(TypeError, ValueError):
        # Date has whole seconds: the server's second began at most 1 s before it said so.
        return (before + after) / 2 - (parsedate_to_datetime(date).timestamp() + 0.5)
    return None


def check_timezone(config: Config, now: float | None = None,
                   host: tzinfo | None = None) -> Check:
    """``store.timezone`` against the host's zone: posd uses the former for everything a
    person reads, but other programs on the till (and its log's timestamps) use the latter."""
    now = time.time() if now is None else now
    zone = config.store.tz
    here = datetime.fromtimestamp(now, UTC).astimezone(host)
    there = datetime.fromtimestamp(now, zone)
    if here.utcoffset() == there.utcoffset():
        return ok("timezone", f"{config.store.timezone} (the host's zone has the same offset)")
    return warn("timezone", f"the host's zone ({here.tzname()}, UTC{here:%z}) is not "
                f"store.timezone {config.store.timezone} (UTC{there:%z}): posd's receipts, "
                "reports and business days follow store.timezone, the host's logs and other "
                "programs do not", f"timedatectl set-timezone {config.store.timezone}, or set "
                "store.timezone to where the shop is")


def check_clock(config: Config) -> Check:
    for url, verify in _endpoints(config):
        skew = server_skew(url, verify)
        if skew is None:
            continue
        detail = f"{abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} {url} (HTTP Date)"
        fix = ("set the time and keep it synchronised: timedatectl set-ntp true (or "
               "systemd-timesyncd/chrony); receipts, reports and Alipay's request timestamps "
               "follow this clock")
        if abs(skew) > CLOCK_FAIL_S:
            return fail("clock", detail, fix)
        if abs(skew) > CLOCK_WARN_S:
            return warn("clock", detail, fix)
        return ok("clock", detail)
    return warn("clock", "no server answered to compare the clock with",
                "see the channel and HQ rows; then timedatectl shows whether NTP keeps time")


def check_hq(config: Config) -> Check:
    """HQ answers and takes the token: GET /v1/stores/{store}/days/{today} (DESIGN §6)."""
    hq = config.hq
    if not hq.url:
        return skip("hq", "not configured (hq.url is empty): no sync")
    try:
        token = read_secret(hq.token_file, "hq.token_file").decode("utf-8", "replace").strip()
    except ConfigError as err:
        return fail("hq", str(err), "put HQ's token in hq.token_file (mode 0600)")
    day = datetime.now(config.store.tz).date().isoformat()
    url = f"{hq.url}/v1/stores/{config.store.id}/days/{day}"
    try:
        with requests.Session() as http:
            http.trust_env = False
            response = http.get(url, headers={"Authorization": f"Bearer {token}"},
                                timeout=(hq.connect_timeout_s, 10.0),
                                verify=str(hq.ca_file) if hq.ca_file else True)
    except requests.RequestException as err:
        return fail("hq", f"{hq.url} unreachable ({type(err).__name__})",
                    "check hq.url, DNS, the network/firewall and hq.ca_file; sales are kept "
                    "and sent once HQ is back")
    if response.status_code in (401, 403):
        return fail("hq", f"HQ refused the token ({response.status_code})",
                    "hq.token_file must hold the token HQ issued for this store")
    if response.status_code != 200:
        return fail("hq", f"HQ answered {response.status_code}: {response.text[:200]}",
                    "see HQ's logs; hq.url must be HQ's base URL")
    return ok("hq", f"{hq.url}: reachable, token accepted")
