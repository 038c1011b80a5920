# SPDX-License-Identifier: MIT
"""`posd demo` as a register and a person use it: real processes, real sockets, a real pty.

The register's side runs `python -m posd demo` with stdin closed (`stdin=DEVNULL`, as under
a service manager or a CI job) and drives it with the `posd` CLI; the person's side runs it
on a pseudo-terminal and types into it, Ctrl-C included. Every wait is bounded and waits on
something (the child process, or `select` on the terminal), never on the clock alone.
"""

from __future__ import annotations

import os
import select
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.waiting import wait_until_up

ROOT = Path(__file__).parents[2]
PAID = "134567891234560000"  # any other ending: paid at once (DESIGN §5)
NOT_ENOUGH = "134567891234560003"  # insufficient balance: declined
NEVER_CONFIRMS = "134567891234560002"  # the customer never confirms: deadline, reverse
READY_S = 30.0  # the first start writes RSA keys; a loaded CI box is slow
STOP_S = 20.0

#: Run by the child before it becomes `python -m posd …`: make the pty on stdin its
#: controlling terminal, as a login shell's is (Popen's start_new_session gave it a session
#: of its own), so that a Ctrl-C typed into the pty reaches posd as the terminal's SIGINT.
AS_LOGIN_SHELL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, '-m', 'posd', *sys.argv[1:]])"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[Any]]]:
    """Processes a test starts; any still running at teardown is killed."""
    started: list[subprocess.Popen[Any]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class Demo:
    """`python -m posd demo --data DIR` with stdin closed and its output in a file."""

    def __init__(self, data: Path, out: Path, children: list[subprocess.Popen[Any]]) -> None:
        self.data, self.out, self._children = data, out, children
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *args: str) -> None:
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "posd", "demo", "--data", str(self.data), *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        self._children.append(self.proc)

    def output(self) -> str:
        return self.out.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, port: int) -> dict[str, Any]:
        """/v1/health's JSON once it answers and the banner is printed (the API answers
        from the moment it listens, a moment before the demo prints its banner); fails at
        once if the demo exits."""
        health = wait_until_up(f"http://127.0.0.1:{port}", self.proc, timeout=READY_S,
                               output=self.output)
        assert self.proc is not None
        deadline = time.monotonic() + READY_S
        while "serving the API only" not in self.output():  # the banner's last line
            try:  # waits on the process: returns at once if it exits meanwhile
                code = self.proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                assert time.monotonic() < deadline, f"no banner in {READY_S} s:\n{self.output()}"
                continue
            raise AssertionError(f"the demo exited ({code}):\n{self.output()}")
        return health

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=STOP_S)


def posd(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    """The `posd` CLI, as the register runs it, against the demo's generated config."""
    return subprocess.run(
        [sys.executable, "-m", "posd", *args, "-c", str(data / "config.toml")],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)


def test_a_register_charges_through_the_demo_and_the_history_stays(
        tmp_path: Path, children: list[subprocess.Popen[Any]]) -> None:
    data, port = tmp_path / "demo", _free_port()
    demo = Demo(data, tmp_path / "first.out", children)
    demo.start("--port", str(port))
    health = demo.wait_ready(port)
    assert health["status"] == "ok" and health["channels"] == ["wechat", "alipay"]
    assert "stdin is not a terminal: serving the API only" in demo.output()

    # A second demo on the same directory is refused, and leaves the first one's config be.
    config = (data / "config.toml").read_text()
    second = subprocess.run(
        [sys.executable, "-m", "posd", "demo", "--data", str(data), "--port", str(_free_port())],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, cwd=ROOT,
        check=False)
    assert second.returncode == 1
    assert "is in use by another posd demo or posd simulator" in second.stderr, second.stderr
    assert (data / "config.toml").read_text() == config

    paid = posd("charge", "12.50", "--code", PAID, data=data)
    assert paid.returncode == 0, paid.stdout + paid.stderr
    assert paid.stdout.splitlines()[-1] == "sale 1: paid - Paid"

    declined = posd("charge", "12.50", "--code", NOT_ENOUGH, data=data)
    assert declined.returncode == 1, declined.stdout + declined.stderr
    assert declined.stdout.splitlines()[-1].startswith("sale 2: declined - Not enough balance")

    listed = posd("sales", data=data)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [
        ("1", "12.50", "wechat", "paid"), ("2", "12.50", "wechat", "declined")]

    assert demo.terminate() == 0
    assert "stopping: in-flight sales are finished or kept" in demo.output()
    receipts = sorted((data / "receipts").iterdir())
    assert len(receipts) == 2 and "PAID" in receipts[0].read_text(encoding="utf-8")

    # Started again on the same directory, without --port: the same port, token and history.
    token = (data / "api-token").read_text()
    again = Demo(data, tmp_path / "second.out", children)
    again.start()
    again.wait_ready(port)
    relisted = posd("sales", data=data)
    assert relisted.returncode == 0, relisted.stderr
    assert relisted.stdout == listed.stdout
    assert (data / "api-token").read_text() == token
    assert again.terminate() == 0

    # With --wechat-v3 the same shop takes WeChat codes over WeChat Pay v3 (v2 stays enabled
    # for its own sales); the simulator served v3 all along, with the keys kept in DIR.
    v3 = Demo(data, tmp_path / "third.out", children)
    v3.start("--wechat-v3")
    assert v3.wait_ready(port)["channels"] == ["wechat", "alipay", "wechat_v3"]
    assert "WeChat codes go to v3" in v3.output()
    over_v3 = posd("charge", "3.00", "--code", "134567890123451000", "--json", data=data)
    assert over_v3.returncode == 0, over_v3.stdout + over_v3.stderr
    sale = json.loads(over_v3.stdout[over_v3.stdout.index("{"):])
    assert (sale["channel"], sale["state"]) == ("wechat_v3", "paid"), sale
    assert v3.terminate() == 0


def test_posd_simulator_alone_serves_its_control_endpoint(
        tmp_path: Path, children: list[subprocess.Popen[Any]]) -> None:
    data, port = tmp_path / "sim", _free_port()
    with (tmp_path / "sim.out").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "posd", "simulator", "--data", str(data), "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    children.append(proc)
    ca, url = data / "pki" / "ca.pem", f"https://127.0.0.1:{port}/_sim/"
    deadline = time.monotonic() + READY_S
    while True:
        try:
            answer = requests.get(url, verify=ca, timeout=2) if ca.exists() else None
        except requests.ConnectionError:
            answer = None
        if answer is not None:
            break
        with pytest.raises(subprocess.TimeoutExpired):  # between tries, wait on the child
            proc.wait(timeout=0.05)
        assert time.monotonic() < deadline, (tmp_path / "sim.out").read_text()
    assert answer.status_code == 200
    assert answer.json()["sandbox_codes"][0] == {
        "ending": "0001", "outcome": "confirm_later", "wechat": "134567890123450001",
        "alipay": "281234567890120001"}
    # The generated config points at this simulator, so `posd run -c DIR/config.toml` works.
    assert f'base_url = "https://127.0.0.1:{port}"' in (data / "config.toml").read_text()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=STOP_S) == 0
    shown = (tmp_path / "sim.out").read_text()
    assert f"channel simulator listening on https://127.0.0.1:{port}" in shown
    assert "Traceback" not in shown


class Terminal:
    """The controlling side of a pty: type into it and read what a person would see."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.seen = ""  # everything read so far
        self._unread = ""

    def type(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\r")  # Enter; the tty turns CR into NL (ICRNL)

    def press_ctrl_c(self) -> None:
        os.write(self.fd, b"\x03")  # the terminal driver turns it into SIGINT (ISIG)

    def expect(self, text: str, timeout: float = 20.0) -> str:
        """Read until ``text`` appears; return what came up to and including it."""
        deadline = time.monotonic() + timeout
        while text not in self._unread:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise AssertionError(f"no {text!r} within {timeout:g} s; the screen:\n{self.seen}")
            try:
                chunk = os.read(self.fd, 4096).decode(errors="replace")
            except OSError:  # EIO: every process holding the pty has exited
                chunk = ""
            if not chunk:
                raise AssertionError(f"no {text!r} before the end; the screen:\n{self.seen}")
            self.seen += chunk
            self._unread += chunk
        end = self._unread.index(text) + len(text)
        shown, self._unread = self._unread[:end], self._unread[end:]
        return shown.replace("\r\n", "\n")

    def read_to_end(self, timeout: float = 5.0) -> None:
        """Read what the programs write until they have all closed the pty."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0 and select.select([self.fd], [], [], left)[0]:
            try:
                chunk = os.read(self.fd, 4096).decode(errors="replace")
            except OSError:  # EIO: the other side is closed
                return
            if not chunk:
                return
            self.seen += chunk
        raise AssertionError(f"the pty was still open after {timeout:g} s; the screen:\n{self.seen}")


Start = Callable[..., "subprocess.Popen[bytes]"]


@pytest.fixture
def terminal(children: list[subprocess.Popen[Any]]) -> Iterator[tuple[Terminal, Start]]:
    """A pty, and a function that starts `python -m posd ARGS…` with it as its terminal."""
    controller, tty = os.openpty()

    def start(*args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-c", AS_LOGIN_SHELL, *args], stdin=tty,
                                stdout=tty, stderr=tty, start_new_session=True, cwd=ROOT)
        os.close(tty)  # the child holds it now: its exit reads as EIO on our side
        children.append(proc)
        return proc

    yield Terminal(controller), start
    os.close(controller)


def test_a_cashier_at_the_demo_terminal(tmp_path: Path,
                                        terminal: tuple[Terminal, Start]) -> None:
    term, start = terminal
    proc = start("demo", "--data", str(tmp_path / "demo"), "--port", str(_free_port()))

    term.expect("Amount in yuan")
    term.type("12.50")
    assert "12.50 yuan — scan or type the customer's code" in term.expect("Payment code:")
    term.type(PAID)
    shown = term.expect("[paid] Paid")
    assert "before posd reverses it" in shown  # the live line counted down meanwhile
    shown += term.expect("Amount in yuan")
    assert "PAID" in shown and "CNY 12.50" in shown and "1345…0000" in shown
    assert shown.count(PAID) == 1  # the echo of what was typed; posd shows it masked
    assert shown.index("CNY 12.50") < shown.index("Amount in yuan")  # the prompt waits
    # A misscan (a product's barcode) is refused with a sentence; the sale keeps waiting.
    term.type("2.00")
    term.expect("Payment code:")
    term.type("6901234567892")
    shown = term.expect("Payment code:")
    assert "product barcode" in shown and "still waiting" in shown
    term.type(PAID.replace("0000", "1111"))
    term.expect("[paid] Paid")

    term.expect("Amount in yuan")
    term.type("12,50")
    shown = term.expect("Amount in yuan")
    assert "not an amount in yuan: '12,50' (write it like 12.50" in shown

    # Ctrl-C while a customer is still confirming: a clean stop, the sale kept for later.
    term.type("8.00")
    term.expect("Payment code:")
    term.type(NEVER_CONFIRMS)
    term.expect("[confirming]")
    term.press_ctrl_c()
    term.expect("stopping: in-flight sales are finished or kept")
    assert proc.wait(timeout=STOP_S) == 0
    term.read_to_end()
    assert "Traceback" not in term.seen and "Exception" not in term.seen
