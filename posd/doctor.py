# SPDX-License-Identifier: MIT
"""``posd doctor``: is this till ready to take payments? A table of checks, each failure
with its fix. [shell]

The checks, in order: the config; its key files (private, readable by the service user);
the database (SQLite's integrity check) and the free disk under it; whether the daemon
answers; each scanner (present, permitted, grabbable) and the printer (reachable, its DLE
EOT status); each enabled channel's TLS and credentials; the clock against the servers' own;
HQ. A channel is proved with a signed query for an order that cannot exist: the answer
"no such order" (WeChat ORDERNOTEXIST, Alipay ACQ.TRADE_NOT_EXIST), signed by the channel,
shows that TLS, the merchant ids and the keys in both directions work -- and moves no money.

While the daemon runs it holds the scanners (an EVIOCGRAB, a serial lock): their rows then
come from its /v1/health instead of opening the devices again. Devices and channels are
in :mod:`posd.doctor_checks`; this module holds the rest, the table and the command.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sqlite3
import stat
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from posd import config as configuration
from posd.backup import BackupError, open_read_only
from posd.config import Config
from posd.checks import Check, Result, fail, ok, warn
from posd.doctor_checks import (
    check_channels,
    check_clock,
    check_timezone,
    check_hq,
    check_printer,
    check_scanners,
)
from posd.core.errors import ConfigError, PosdError
from posd.logs import redact

#: The user systemd/posd.service runs posd as (systemd/posd.sysusers makes it).
SERVICE_USER = "posd"
MIB = 1024 * 1024
#: Free space under the database below which posd doctor fails / warns.
DISK_FAIL_BYTES, DISK_WARN_BYTES = 100 * MIB, 1024 * MIB


# --- the config and its files ----------------------------------------------------------------


def _service_user() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return None  # not installed as a service (a developer's checkout)


def readable_by(user: pwd.struct_passwd, path: Path) -> bool:
    """Whether ``user`` may read ``path`` by its owner, group and mode bits."""
    info = path.stat()
    if info.st_uid == user.pw_uid:
        return bool(info.st_mode & stat.S_IRUSR)
    if info.st_gid in os.getgrouplist(user.pw_name, user.pw_gid):
        return bool(info.st_mode & stat.S_IRGRP)
    return bool(info.st_mode & stat.S_IROTH)


def _unreadable(config: Config, path: Path) -> list[str]:
    user = _service_user()
    if user is None:
        return []
    secret = configuration._secret_files(config)  # noqa: SLF001 - config's own list of them
    public = configuration._public_files(config)  # noqa: SLF001
    named = [("config", path)] + [(key, p) for key, p in (*secret, *public) if p is not None]
    return [f"{key}: {p} is not readable by the user {user.pw_name}" for key, p in named
            if p.is_file() and not readable_by(user, p)]


def check_files(config: Config, path: Path) -> Check:
    problems = configuration.check_files(config)
    if problems:
        return fail("key files", "; ".join(problems),
                    "secret files: chown posd:posd FILE && chmod 600 FILE; other files: "
                    "correct the path in the config or put the file there")
    if unreadable := _unreadable(config, path):
        return fail("key files", "; ".join(unreadable),
                    "config: chown root:posd FILE && chmod 640 FILE; secrets: "
                    "chown posd:posd FILE && chmod 600 FILE")
    count = len(configuration._secret_files(config))  # noqa: SLF001
    return ok("key files", f"{count} secret file(s) private (0600/0400), the others present")


# --- database and disk -------------------------------------------------------------------------


def _database_figures(path: Path) -> tuple[str, str, int, int]:
    conn = open_read_only(path)
    try:
        verdict = str(conn.execute("PRAGMA quick_check").fetchone()[0])
        journal = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
        sales, attention = conn.execute(
            "select count(*), coalesce(sum(state = 'needs_attention'), 0) from sales").fetchone()
        return verdict, journal, int(sales), int(attention)
    finally:
        conn.close()


def check_database(config: Config) -> Check:
    path = config.database.path
    if not path.exists():
        return warn("database", f"{path}: not created yet",
                    "posd run creates it: its directory must be writable by the user posd "
                    "(systemd's StateDirectory=posd makes /var/lib/posd so)")
    try:
        verdict, journal, sales, attention = _database_figures(path)
    except (sqlite3.Error, BackupError) as err:
        return fail("database", f"{path}: cannot read: {err}",
                    "check it is posd's (chown posd:posd) and a posd database; else restore "
                    "the last backup (docs/operations.md)")
    if verdict != "ok":
        return fail("database", f"{path}: integrity check: {verdict}",
                    "stop posd, keep the damaged file aside, restore the last backup "
                    "(docs/operations.md)")
    size = path.stat().st_size / MIB
    detail = f"{path}: integrity ok, {sales} sales, {size:.1f} MiB, journal {journal}"
    if attention:
        return warn("database", f"{detail}; {attention} sale(s) need attention",
                    "check them with the channel and record what was done: posd sales, "
                    "GET /v1/health (needs_attention)")
    return ok("database", detail)


def check_disk(config: Config) -> Check:
    where = config.database.path.parent
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    detail = f"{free / MIB:,.0f} MiB free under {where}"
    fix = ("free space (old logs: journalctl --vacuum-size=100M; old backups), or a "
           "larger disk: a full disk stops sales from being written")
    if free < DISK_FAIL_BYTES:
        return fail("disk", detail, fix)
    if free < DISK_WARN_BYTES:
        return warn("disk", detail, fix)
    return ok("disk", detail)


def daemon_health(config: Config) -> tuple[Check, dict[str, Any] | None]:
    """Whether posd answers on api.listen, and its /v1/health when it does."""
    from posd.client import ApiClient

    try:
        client = ApiClient.from_config(config)
    except PosdError as err:
        return warn("daemon", f"cannot ask it: {err}", "see the key files row"), None
    try:
        health = client.health()
    except PosdError as err:
        return warn("daemon", f"not answering on {config.api.listen}: {err}",
                    "systemctl start posd; then journalctl -u posd for why it stopped"), None
    finally:
        client.close()
    status = str(health.get("status", "?"))
    degraded = "; ".join(str(d) for d in health.get("degraded", []))
    if status == "ok":
        return ok("daemon", f"running on {config.api.listen}: ok"), health
    return warn("daemon", f"running on {config.api.listen}: {status}: {degraded}",
                "see the rows below and journalctl -u posd"), health


# --- the whole run -------------------------------------------------------------------------------


def run_checks(path: Path) -> list[Check]:
    """Every check for the config at ``path``; the config's own failure ends the list."""
    try:
        config = configuration.parse(path)
    except ConfigError as err:
        return [fail("config", str(err), f"correct the key named; posd config check -c {path}")]
    configuration.remember_secrets(config)  # nothing below may print one (render redacts)
    checks = [ok("config", f"{path}: valid"), check_files(config, path),
              check_database(config), check_disk(config)]
    running, health = daemon_health(config)
    checks.append(running)
    checks += check_scanners(config, health)
    checks.append(check_printer(config))
    checks += check_channels(config)
    checks.append(check_timezone(config))
    checks.append(check_clock(config))
    checks.append(check_hq(config))
    return checks


def render(checks: Iterable[Check]) -> str:
    """The table a person reads: one row per check, the fix under each failure or warning."""
    rows = list(checks)
    width = max((len(c.name) for c in rows), default=8) + 2
    lines = []
    for check in rows:
        label = check.result.value.upper() if check.result is not Result.OK else "ok"
        lines.append(f"{label:5} {check.name:{width}}{check.detail}")
        if check.fix and check.result in (Result.FAIL, Result.WARN):
            lines.append(f"{'':5} {'':{width}}fix: {check.fix}")
    failed = sum(c.result is Result.FAIL for c in rows)
    warned = sum(c.result is Result.WARN for c in rows)
    lines.append("")
    lines.append(f"{failed} failed, {warned} warning(s), {len(rows)} checks")
    return redact("\n".join(lines))


def doctor_command(path: Path, *, as_json: bool = False) -> int:
    """Print the table (or JSON); 1 if any check failed, else 0."""
    checks = run_checks(path)
    if as_json:
        print(redact(json.dumps([asdict(c) for c in checks], ensure_ascii=False, indent=2)))
    else:
        print(render(checks))
    return 1 if any(c.result is Result.FAIL for c in checks) else 0
