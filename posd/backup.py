# SPDX-License-Identifier: MIT
"""``posd backup DEST``: a consistent copy of the live database, with SQLite's online backup API.

A file copy of a database in WAL mode can miss committed transactions (still in ``-wal``)
or catch a page half-written (reference/hardware.md §3). ``sqlite3.Connection.backup`` copies
every page of one read transaction instead: with WAL that snapshot does not block the
daemon's writes, so a backup can run while sales are taken. The copy is made under a
temporary name beside ``DEST``, checked (``PRAGMA integrity_check``), switched to a single
self-contained file (``journal_mode=DELETE``), synced, and only then renamed to ``DEST``:
``DEST`` is a whole, verified backup or is not there.

Restoring is a file copy while posd is stopped: docs/operations.md.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from posd.core.errors import PosdError


class BackupError(PosdError):
    """The backup could not be made; nothing was left at DEST."""


@dataclass(frozen=True, slots=True)
class Backup:
    path: Path
    size: int
    sales: int
    seconds: float


def backup_path(dest: Path, now: float) -> Path:
    """``dest`` itself, or for a directory ``dest/posd-YYYYMMDD-HHMMSS.db`` (local time)."""
    if dest.is_dir():
        return dest / time.strftime("posd-%Y%m%d-%H%M%S.db", time.localtime(now))
    return dest


def open_read_only(path: Path) -> sqlite3.Connection:
    """The database at ``path``, read-only; BackupError if there is none (never creates one)."""
    if not path.is_file():
        raise BackupError(f"no database at {path} (database.path)")
    try:
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
    except sqlite3.Error as err:
        raise BackupError(f"cannot open {path}: {err}") from err


def make_backup(source: Path, dest: Path, *, now: float | None = None) -> Backup:
    """Copy the database at ``source`` to ``dest`` (a new file, or a directory)."""
    started = time.monotonic()
    target = backup_path(dest, time.time() if now is None else now)
    if target.exists():
        raise BackupError(f"{target} exists: choose another name, or a directory")
    partial = target.with_name(f".{target.name}.partial")
    src = open_read_only(source)
    try:
        _copy(src, partial)
        os.replace(partial, target)
    except (sqlite3.Error, OSError) as err:
        raise BackupError(f"backup of {source} to {target} failed: {err}") from err
    finally:
        src.close()
        with contextlib.suppress(OSError):
            partial.unlink()
    _sync_directory(target.parent)
    return Backup(target, target.stat().st_size, _count_sales(target),
                  time.monotonic() - started)


def _copy(src: sqlite3.Connection, partial: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()  # a leftover of an interrupted backup
    # Private from the start (0600): sales records are the shop's business (an empty file is
    # an empty database to SQLite).
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    dst = sqlite3.connect(partial)
    try:
        # pages=-1: every page in one step, i.e. one read transaction: a consistent snapshot.
        src.backup(dst, pages=-1)
        verdict = dst.execute("PRAGMA integrity_check").fetchone()[0]
        if verdict != "ok":
            raise BackupError(f"the copy fails SQLite's integrity check: {verdict}")
        dst.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal to carry along
        dst.commit()
    finally:
        dst.close()
    with partial.open("rb+") as handle:
        os.fsync(handle.fileno())


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable (a power cut could otherwise undo it)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _count_sales(path: Path) -> int:
    conn = open_read_only(path)
    try:
        return int(conn.execute("select count(*) from sales").fetchone()[0])
    except sqlite3.Error:
        return 0  # not a posd database (no sales table): still a faithful copy
    finally:
        conn.close()
