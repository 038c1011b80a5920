# SPDX-License-Identifier: MIT
"""What the daemon loads follows its configuration, and glibc's allocator is tuned (posd.memory).

Each case is a fresh interpreter that builds and starts the real daemon (SQLite file, API on
loopback, the channels against a simulator in the test's process), then reports which of
the heavy libraries it imported: python-escpos (and Pillow) only for an ESC/POS printer,
cryptography only for a channel that signs with RSA, and its X.509 modules only for one that
reads certificates (Alipay's certificate mode, WeChat Pay v3). About 9 MB each in the
daemon's RSS (docs/benchmarks.md § RSS over 100,000 sales).
"""

from __future__ import annotations

import json
import os
import platform
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from posd import memory
from posd.channels.simulator import AlipayKeys, Simulator, TestPki
from tests.sandbox import make_config, start_simulator, to_toml

#: modules the daemon loads only for the set-ups that use them (by their exact names)
HEAVY = ("cryptography", "cryptography.x509", "escpos", "PIL")

PROBE = """
import json, sys
from pathlib import Path
from posd import memory
arenas = memory.limit_arenas()
from posd.config import load
from posd.daemon import Daemon
daemon = Daemon.build(load(Path(sys.argv[1])))
daemon.start()
try:
    loaded = sorted(name for name in sys.argv[2:] if name in sys.modules)
    print(json.dumps({"loaded": loaded, "arenas": arenas, "trim": memory.trim()}))
finally:
    daemon.stop()
"""


@pytest.fixture
def sim(pki: TestPki, alipay_keys: AlipayKeys) -> Iterator[Simulator]:
    simulator = start_simulator(pki, alipay=alipay_keys)
    yield simulator
    simulator.stop()


def _loaded(tmp_path: Path, data: dict[str, Any]) -> dict[str, Any]:
    config = tmp_path / "config.toml"
    config.write_text(to_toml(data), encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", PROBE, str(config), *HEAVY],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_a_wechat_till_with_a_console_printer_loads_neither(tmp_path: Path, sim: Simulator,
                                                           pki: TestPki) -> None:
    data = make_config(tmp_path, sim.url, pki, printer={"kind": "console"})
    assert _loaded(tmp_path, data)["loaded"] == []


def test_an_escpos_printer_loads_python_escpos(tmp_path: Path, sim: Simulator,
                                               pki: TestPki) -> None:
    data = make_config(tmp_path, sim.url, pki,
                       printer={"kind": "file", "device": str(tmp_path / "printer.bin"),
                                "status_query": False})
    assert _loaded(tmp_path, data)["loaded"] == ["PIL", "escpos"]


def test_alipay_loads_cryptography(tmp_path: Path, sim: Simulator, pki: TestPki,
                                   alipay_keys: AlipayKeys) -> None:
    """Public-key mode: RSA, not X.509 (certificate mode's module is loaded by that mode)."""
    data = make_config(tmp_path, sim.url, pki, alipay=alipay_keys)
    assert _loaded(tmp_path, data)["loaded"] == ["cryptography"]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt and malloc_trim")
def test_glibc_takes_the_arena_limit_and_trims(tmp_path: Path, sim: Simulator,
                                               pki: TestPki) -> None:
    answer = _loaded(tmp_path, make_config(tmp_path, sim.url, pki))
    assert answer["arenas"] is True
    assert isinstance(answer["trim"], bool)
    assert isinstance(memory.trim(), bool)  # and in this process, threads and all


KEEP = """
import json, os, sys
from pathlib import Path
from posd.devices.printers import PROFILES_DIR_ENV, keep_profiles_in
used = keep_profiles_in(Path(sys.argv[1]))
import escpos.printer
print(json.dumps({"used": used, "env": os.environ.get(PROFILES_DIR_ENV)}))
"""


def _keep(directory: Path) -> tuple[dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if k != "ESCPOS_CAPABILITIES_PICKLE_DIR"}
    done = subprocess.run([sys.executable, "-c", KEEP, str(directory)], capture_output=True,
                          text=True, timeout=60, check=False, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1]), done.stderr


def test_python_escpos_keeps_its_parsed_profiles_in_a_private_directory(tmp_path: Path) -> None:
    profiles = tmp_path / "db" / "escpos-profiles"
    answer, _ = _keep(profiles)
    assert answer == {"used": True, "env": str(profiles)}
    assert stat.S_IMODE(profiles.stat().st_mode) == 0o700
    (pickle,) = profiles.glob("*.capabilities.pickle")
    written = pickle.stat().st_mtime_ns
    assert _keep(profiles)[0]["used"] is True
    assert pickle.stat().st_mtime_ns == written  # the next start loads it, parses nothing


def test_a_directory_others_can_write_is_not_used(tmp_path: Path) -> None:
    profiles = tmp_path / "shared"
    profiles.mkdir(mode=0o777)
    profiles.chmod(0o777)
    answer, stderr = _keep(profiles)
    assert answer == {"used": False, "env": None}
    assert "not private to this user" in stderr
    assert not list(profiles.iterdir())


def test_the_daemon_keeps_them_beside_its_database(tmp_path: Path, sim: Simulator,
                                                  pki: TestPki) -> None:
    data = make_config(tmp_path, sim.url, pki,
                       printer={"kind": "file", "device": str(tmp_path / "printer.bin"),
                                "status_query": False})
    _loaded(tmp_path, data)
    assert list((tmp_path / "escpos-profiles").glob("*.capabilities.pickle"))


def test_start_ups_objects_leave_the_collectors_generations() -> None:
    """posd run's serve() freezes what start-up made once the daemon has started: a full
    collection then walks only what was made since (posd/memory.py)."""
    import gc

    before = gc.get_freeze_count()
    try:
        frozen = memory.freeze_startup()
        assert frozen >= before and frozen > 1000  # this test process's modules at least
        assert sum(gc.get_count()) < 100  # the generations start again from (nearly) nothing
    finally:
        gc.unfreeze()
