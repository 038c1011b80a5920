# SPDX-License-Identifier: MIT
"""The packaging in systemd/, checked by systemd's own tools where they exist:
``systemd-analyze verify`` and ``security --offline`` on the unit, ``systemd-sysusers`` and
``systemd-tmpfiles`` applied to a scratch root, and the udev rules' syntax. .ci/run installs
the tools (Debian's ``systemd`` package) and sets POSD_REQUIRE_SYSTEMD=1, so there they fail
rather than skip when missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from posd import config as configuration
from posd.cli import EX_CONFIG
from posd.engine import Engine

ROOT = Path(__file__).parents[2]
SYSTEMD = ROOT / "systemd"
UNIT = SYSTEMD / "posd.service"


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("POSD_REQUIRE_SYSTEMD"):
            pytest.fail(f"{name} is missing (apt-get install systemd; .ci/run does)")
        pytest.skip(f"{name} not installed (apt-get install systemd)")
    return found


def unit_settings() -> dict[str, list[str]]:
    """``Section.Key`` -> every value it is given in the unit (keys may repeat)."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key}", []).append(value)
    return found


@pytest.fixture(name="installed_unit")
def _installed_unit(tmp_path: Path) -> Path:
    """The unit as installed, with ExecStart at this checkout's posd (no /opt/posd here)."""
    posd = Path(sys.executable).parent / "posd"  # the console script beside this Python
    assert posd.exists()
    text = UNIT.read_text(encoding="utf-8").replace("/opt/posd/bin/posd", str(posd))
    (tmp_path / "posd.service").write_text(text, encoding="utf-8")
    return tmp_path / "posd.service"


def test_systemd_analyze_verify_finds_nothing(installed_unit: Path) -> None:
    result = subprocess.run([tool("systemd-analyze"), "verify", "--man=no",
                             str(installed_unit)], capture_output=True, text=True, check=False,
                            cwd=installed_unit.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_the_hardening_scores_ok_with_systemd_analyze_security(installed_unit: Path) -> None:
    # --threshold is the exposure times ten: 25 = "2.5 OK" (this unit: 1.5 with systemd 252).
    result = subprocess.run([tool("systemd-analyze"), "security", "--offline=yes",
                             "--threshold=25", "--no-pager", str(installed_unit)],
                            capture_output=True, text=True, check=False,
                            cwd=installed_unit.parent)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "Overall exposure level for posd.service" in result.stdout


def test_the_unit_says_what_the_issue_asks() -> None:
    unit = unit_settings()
    one = {key: values[-1] for key, values in unit.items()}
    assert one["Service.Type"] == "notify"
    assert one["Service.Restart"] == "on-failure"
    assert one["Service.RestartPreventExitStatus"] == str(EX_CONFIG)
    assert one["Service.User"] == "posd"
    assert one["Service.SupplementaryGroups"].split() == ["input", "dialout", "lp"]
    assert one["Service.StateDirectory"] == one["Service.ConfigurationDirectory"] == "posd"
    assert one["Service.ProtectSystem"] == "strict"
    assert one["Service.DevicePolicy"] == "closed"
    assert "PrivateDevices" not in one  # it would hide the scanner and the printer
    allowed = {value.split()[0] for value in unit["Service.DeviceAllow"]}
    assert {"char-input", "char-ttyUSB", "char-ttyACM", "char-usb_device"} <= allowed
    assert one["Service.NoNewPrivileges"] == one["Service.PrivateTmp"] == "yes"
    assert "AF_UNIX" in one["Service.RestrictAddressFamilies"].split()  # $NOTIFY_SOCKET
    assert unit["Service.SystemCallFilter"][0] == "@system-service"
    # The watchdog: posd feeds it every half interval; a stop waits for the engine's stop.
    assert int(one["Service.WatchdogSec"]) >= 10
    engine_stop_s = Engine.stop.__defaults__[0]  # type: ignore[index]
    assert int(one["Service.TimeoutStopSec"]) > engine_stop_s + 25
    assert one["Service.ExecStart"].endswith("posd run -c /etc/posd/config.toml")


def test_the_default_paths_are_inside_the_units_directories() -> None:
    example = configuration.parse(ROOT / "config.example.toml")
    assert example.database.path.parent == Path("/var/lib/posd")  # StateDirectory=posd
    assert example.api.token_file.parent == Path("/etc/posd")     # ConfigurationDirectory=


def test_sysusers_and_tmpfiles_make_the_user_and_directories(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    subprocess.run([tool("systemd-sysusers"), f"--root={tmp_path}", "-"], check=True,
                   input=(SYSTEMD / "posd.sysusers").read_bytes(), capture_output=True)
    passwd = (tmp_path / "etc" / "passwd").read_text()
    user = next(line.split(":") for line in passwd.splitlines() if line.startswith("posd:"))
    assert user[5:] == ["/var/lib/posd", "/usr/sbin/nologin"]
    groups = {line.split(":")[0]: line.split(":")[3]
              for line in (tmp_path / "etc" / "group").read_text().splitlines()}
    assert all("posd" in groups[g].split(",") for g in ("input", "dialout", "lp"))

    conf = tmp_path / "usr" / "lib" / "tmpfiles.d"
    conf.mkdir(parents=True)
    shutil.copy(SYSTEMD / "posd.tmpfiles", conf / "posd.conf")
    subprocess.run([tool("systemd-tmpfiles"), f"--root={tmp_path}", "--create", "posd.conf"],
                   check=True, capture_output=True)
    uid, gid = int(user[2]), int(user[3])
    state = (tmp_path / "var" / "lib" / "posd").stat()
    assert (state.st_uid, state.st_gid, state.st_mode & 0o777) == (uid, gid, 0o750)
    etc = (tmp_path / "etc" / "posd").stat()
    assert (etc.st_uid, etc.st_gid, etc.st_mode & 0o777) == (0, gid, 0o750)
    assert (tmp_path / "var" / "backups" / "posd").is_dir()


_TOKEN = re.compile(r'(?P<key>[A-Z_]+)(\{(?P<attr>[^}]+)\})?(?P<op>==|!=|\+=|-=|:=|=)"'
                    r'(?P<value>[^"]*)"')
_MATCH_KEYS = {"ACTION", "SUBSYSTEM", "SUBSYSTEMS", "KERNEL", "ATTR", "ATTRS", "ENV", "DRIVERS"}
_ASSIGN_KEYS = {"GROUP", "MODE", "OWNER", "SYMLINK", "ENV", "GOTO", "LABEL", "TAG"}


def udev_rules(text: str) -> list[list[re.Match[str]]]:
    """Each rule's key-value pairs; an AssertionError names anything udev would not read."""
    rules = []
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pairs = []
        for part in re.split(r",\s*(?=[A-Z_]+[{=!+:-])", line):
            token = _TOKEN.fullmatch(part.strip())
            assert token is not None, f"not a udev key-value pair: {part!r}"
            matching = token["op"] in ("==", "!=")
            assert token["key"] in (_MATCH_KEYS if matching else _ASSIGN_KEYS), part
            pairs.append(token)
        rules.append(pairs)
    return rules


def test_the_udev_rules_parse_and_do_what_docs_say() -> None:
    text = (SYSTEMD / "60-posd.rules").read_text(encoding="utf-8")
    rules = udev_rules(text)
    labels = {t["value"] for r in rules for t in r if t["key"] == "LABEL"}
    assert {t["value"] for r in rules for t in r if t["key"] == "GOTO"} <= labels
    assigned = {(t["key"], t["attr"], t["value"]) for r in rules for t in r if t["op"] != "=="}
    assert ("SYMLINK", None, "input/posd-scanner") in assigned
    assert ("ENV", "ID_MM_DEVICE_IGNORE", "1") in assigned
    assert ("GROUP", None, "lp") in assigned
    # Placeholders until a person puts the ids in: then every id is lowercase hex, as sysfs.
    edited = text
    for placeholder, value in (("SCANNER_VID", "0c2e"), ("SCANNER_PID", "0b61"),
                               ("PRINTER_VID", "0416"), ("PRINTER_PID", "5011")):
        assert placeholder in text
        edited = edited.replace(placeholder, value)
    ids = [t["value"] for r in udev_rules(edited) for t in r if t["attr"] in
           ("idVendor", "idProduct")]
    assert ids and all(re.fullmatch(r"[0-9a-f]{4}", value) for value in ids)
