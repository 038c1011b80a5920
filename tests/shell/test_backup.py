# SPDX-License-Identifier: MIT
"""`posd backup`: SQLite's online backup API on the live database (real SQLite files, a
writer in another thread), the documented restore, and the refusals."""

from __future__ import annotations

import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from posd.backup import BackupError, make_backup
from posd.cli import main
from posd.core.money import Fen
from posd.core.sale import make_out_trade_no, new_sale
from posd.store import Store
from tests.sandbox import secret, to_toml


def add_sales(store: Store, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        def make(seq: int, n: int = n) -> object:
            return new_sale(make_out_trade_no("S001", "T01", 1_700_000_000.0 + n, seq),
                            Fen(100 + n), 1_700_000_000.0 + n, order_ref=f"R{n}")
        store.create_sale(make, order_ref=f"R{n}", idempotency_key=None)  # type: ignore[arg-type]


def sales_in(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("select count(*) from sales").fetchone()[0])
    finally:
        conn.close()


def test_a_backup_while_sales_are_written_is_whole_and_consistent(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "posd.db")
    add_sales(store, 200)
    done = threading.Event()

    def writer() -> None:  # the daemon keeps taking sales during the backup
        n = 200
        while not done.is_set() and n < 2000:
            add_sales(store, 1, n)
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        made = make_backup(tmp_path / "posd.db", tmp_path / "backup.db")
    finally:
        done.set()
        thread.join()
        store.close()
    assert made.path == tmp_path / "backup.db"
    assert 200 <= made.sales == sales_in(made.path)
    conn = sqlite3.connect(made.path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one file
        # Consistent: every sale's history and the rollup came in the same snapshot.
        events = conn.execute("select count(distinct sale_id) from sale_events").fetchone()[0]
        totals = conn.execute("select sum(count) from sale_totals").fetchone()[0]
    finally:
        conn.close()
    assert events == totals == made.sales
    assert stat.S_IMODE(made.path.stat().st_mode) == 0o600
    assert not list(tmp_path.glob(".*partial"))


def test_the_cli_writes_into_a_directory_and_the_restore_works(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    live = tmp_path / "state" / "posd.db"
    store = Store.open(live)
    add_sales(store, 5)
    store.close()
    secret(tmp_path / "api-token", "test-token-0123456789abcdef")
    secret(tmp_path / "wechat-api-key", "k" * 32)
    for name in ("cert.pem", "key.pem"):
        secret(tmp_path / name, "-")
    config = tmp_path / "config.toml"
    config.write_text(to_toml({
        "store": {"id": "S001", "name": "Shop", "terminal_id": "T01"},
        "database": {"path": str(live)},
        "api": {"token_file": str(tmp_path / "api-token")},
        "channels": {"wechat": {"appid": "wx1", "mch_id": "1", "api_key_file":
                                str(tmp_path / "wechat-api-key"),
                                "cert_file": str(tmp_path / "cert.pem"),
                                "key_file": str(tmp_path / "key.pem")}},
    }))
    backups = tmp_path / "backups"
    backups.mkdir()
    assert main(["backup", "-c", str(config), str(backups)]) == 0
    (made,) = backups.glob("posd-*.db")
    assert f"{made}: 5 sales" in capsys.readouterr().out

    # docs/operations.md, "Restore": with posd stopped, the damaged database and its -wal and
    # -shm go aside, the backup is copied in its place; posd opens it as its own.
    live.write_bytes(b"damaged")
    live.replace(live.with_name("posd.db.damaged"))
    live.write_bytes(made.read_bytes())
    store = Store.open(live)
    try:
        assert len(store.find()) == 5
        add_sales(store, 1, 5)  # and takes sales again
    finally:
        store.close()

    assert main(["backup", "-c", str(config), str(made)]) == 1  # never overwrites
    assert "exists" in capsys.readouterr().err


def test_no_database_no_backup(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="no database"):
        make_backup(tmp_path / "missing.db", tmp_path / "b.db")
    assert not (tmp_path / "missing.db").exists()  # and none was created
    assert not (tmp_path / "b.db").exists()
