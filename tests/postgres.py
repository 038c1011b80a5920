# SPDX-License-Identifier: MIT
"""A throw-away PostgreSQL cluster for tests and benchmarks (initdb + pg_ctl, loopback).

The cluster lives in a temporary directory, listens on a free 127.0.0.1 port (and a Unix
socket in that directory only), runs with ``fsync=off`` (a test cluster is thrown away,
so durability costs time for nothing), and is stopped and deleted at the end. As root, the
server runs as the ``postgres`` user (PostgreSQL refuses to run as root).

Without the server binaries the fixtures skip, saying so, unless ``POSD_REQUIRE_POSTGRES``
is set (``.ci/run`` sets it after installing PostgreSQL): then they fail.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPERUSER = "posd"


def find_bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, else the newest /usr/lib/postgresql/*/bin."""
    if (initdb := shutil.which("initdb")) and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    bin_dir: Path
    root: Path
    port: int
    run_as: list[str]
    #: fsync, synchronous_commit and full_page_writes on, as a production server runs
    #: (bench/hq_chain.py); off for tests, whose cluster is thrown away
    durable: bool = False

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        result = subprocess.run([*self.run_as, *args], capture_output=True, text=True,
                                timeout=120, check=False, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {result.stdout}{result.stderr}{tail}")

    def start(self) -> None:
        data = self.root / "data"
        if not data.exists():
            self._run(str(self.bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER,
                      "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
        options += ("-c fsync=on -c synchronous_commit=on -c full_page_writes=on"
                    if self.durable else
                    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(data), "-l",
                  str(self.root / "server.log"), "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", mode,
                  "-w", "stop")

    def create_database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"create database {name}")  # type: ignore[arg-type]
        return self.url.rsplit("/", 1)[0] + f"/{name}"


def start_cluster(*, durable: bool = False) -> Cluster | None:
    """Start a throw-away cluster, or None when PostgreSQL is not installed (``durable``:
    fsync on, as in production)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        return None
    root = Path(tempfile.mkdtemp(prefix="posd-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")  # the Debian package creates it
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    cluster = Cluster(bin_dir, root, _free_port(), run_as, durable)
    cluster.start()
    return cluster


def remove_cluster(cluster: Cluster) -> None:
    try:
        cluster.stop("immediate")
    finally:
        shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """One PostgreSQL for the whole run (skips, or fails with POSD_REQUIRE_POSTGRES)."""
    cluster = start_cluster()
    if cluster is None:
        why = ("PostgreSQL server binaries (initdb, pg_ctl) not found; install the "
               "'postgresql' package (.ci/run does)")
        if os.environ.get("POSD_REQUIRE_POSTGRES"):
            pytest.fail(why + " - POSD_REQUIRE_POSTGRES is set")
        pytest.skip(why)
    try:
        yield cluster
    finally:
        remove_cluster(cluster)


@pytest.fixture
def postgres_url(postgres_cluster: Cluster) -> str:
    """A fresh database in the session's cluster."""
    return postgres_cluster.create_database()
