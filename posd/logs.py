# SPDX-License-Identifier: MIT
"""Log output: one redaction path in front of every handler; text for journald or JSON lines.

DESIGN §2 rule 6: payment codes are logged masked, keys and tokens never. Modules mask codes
themselves (``posd.core.codes.mask``); this module is the net under them. Every handler that
``setup_logging`` installs carries the one :class:`Redactor`, a ``logging.Filter``
that rewrites each record -- message, traceback, stack -- before any formatter sees it:

- a run of 16-24 digits that starts with a payment-code prefix (``posd.core.codes.DEFAULT_RULES``)
  and is not glued to a letter or digit on its left becomes ``1345…0001``. The left edge
  keeps ``out_trade_no`` (store + terminal + digits, e.g. ``S001T1…``) readable;
- every secret posd has read (``config_base.read_secret`` and ``config.load`` register them in
  :data:`SECRETS`) becomes ``[secret]``; for a PEM or base64 key, each of its lines too.

Handler filters, not logger filters: a logger's filters do not see records that propagate
up from child loggers (``logging`` docs, "Filter Objects"); a handler's see all of them.

:data:`SECRETS` is process-wide on purpose: secrets enter the process through one function
(``config_base.read_secret``) in whichever module needs them, and the handlers must know all of
them; threading a registry through every constructor would be the same global, hidden.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TextIO

from collections.abc import Iterable

from posd.core.codes import DEFAULT_RULES, PrefixRule, mask

#: Shown instead of a secret.
HIDDEN = "[secret]"
#: Secrets (and lines of a key) shorter than this are not searched for: a 3-character
#: "secret" would blank out ordinary words, and is no secret anyway.
MIN_SECRET = 8


def _code_pattern(rules: Iterable[PrefixRule]) -> re.Pattern[str]:
    """Runs of digits that start with a payment-code prefix, as long as such codes are."""
    rules = tuple(rules)
    prefixes = "|".join(sorted({p for rule in rules for p in rule.prefixes}, key=len,
                               reverse=True))
    # Digits after the prefix: from the shortest rule's rest to the longest's (16-24 by
    # default, so 14-22 after a two-digit prefix).
    shortest = min(rule.min_length - max(len(p) for p in rule.prefixes) for rule in rules)
    longest = max(rule.max_length - min(len(p) for p in rule.prefixes) for rule in rules)
    return re.compile(rf"(?<![0-9A-Za-z])(?:{prefixes})[0-9]{{{max(shortest, 1)},{longest}}}"
                      r"(?![0-9])")


_CODE = _code_pattern(DEFAULT_RULES)


def use_code_rules(rules: Iterable[PrefixRule]) -> None:
    """Mask codes of the configured ``[[codes.rules]]`` too (the built-in ones always)."""
    global _CODE  # noqa: PLW0603 - one pattern for every handler, set once at start-up
    _CODE = _code_pattern((*DEFAULT_RULES, *rules))


class SecretRegistry:
    """The secrets posd has read, as text to search log lines for. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: tuple[str, ...] = ()

    def add(self, raw: bytes | str) -> None:
        """Remember a secret file's content: the whole, and each line of a key file."""
        text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        lines = [line.strip() for line in text.splitlines()]
        body = [line for line in lines if line and not line.startswith("-----")]
        found = {text.strip(), "".join(body), *body}
        with self._lock:
            known = set(self._values) | {v for v in found if len(v) >= MIN_SECRET}
            # Longest first, so a key's whole text goes before its lines.
            self._values = tuple(sorted(known, key=len, reverse=True))

    def clear(self) -> None:
        with self._lock:
            self._values = ()

    def hide(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, HIDDEN)
        return text


SECRETS = SecretRegistry()


def redact(text: str, secrets: SecretRegistry = SECRETS) -> str:
    """``text`` with payment codes masked and known secrets replaced."""
    return _CODE.sub(lambda m: mask(m.group()), secrets.hide(text))


class Redactor(logging.Filter):
    """Rewrite a record so that no formatter can show a full code or a secret."""

    _tracebacks = logging.Formatter()

    def __init__(self, secrets: SecretRegistry = SECRETS) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        # The message is rendered once here; records are shared by all handlers, and a
        # second pass over an already clean message changes nothing.
        record.msg, record.args = redact(record.getMessage(), self._secrets), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._tracebacks.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self._secrets)
        return True


class JsonLines(logging.Formatter):
    """One JSON object per line: time (ISO 8601 with offset), level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": datetime.fromtimestamp(record.created, UTC).astimezone().isoformat(
                timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "thread": record.threadName,
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exception"] = record.exc_text
        if record.stack_info:
            data["stack"] = record.stack_info
        return json.dumps(data, ensure_ascii=False)


class JournalText(logging.Formatter):
    """``<N>logger: message``: journald reads ``<N>`` as the priority (SyslogLevelPrefix=)
    and stamps the time itself, so the line carries neither twice."""

    _PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
                 logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        priority = self._PRIORITY.get(record.levelno, 6)
        # A traceback's lines each get the prefix, or journald would file them as info.
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())


def stderr_is_journal(stream: TextIO) -> bool:
    """True when ``stream`` is the journal stream systemd gave us ($JOURNAL_STREAM is
    "DEVICE:INODE" of it: systemd.exec(5), "Environment variables in spawned processes")."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError):  # ValueError: no file descriptor (a test's StringIO)
        return False
    return expected == f"{info.st_dev}:{info.st_ino}"


PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def handler(stream: TextIO | None = None, *, path: Path | None = None, as_json: bool = False,
            level: int = logging.INFO) -> logging.Handler:
    """A stream (default stderr) or file handler with the redactor and the chosen format."""
    made: logging.Handler
    formatter: logging.Formatter
    if path is not None:
        # Private from the first byte, whatever the umask: log lines name sales and trades.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        os.chmod(path, 0o600)
        made = logging.FileHandler(path, encoding="utf-8")
        formatter = JsonLines() if as_json else logging.Formatter(PLAIN)
    else:
        target = stream or sys.stderr
        made = logging.StreamHandler(target)
        if as_json:
            formatter = JsonLines()
        elif stderr_is_journal(target):
            formatter = JournalText("%(name)s: %(message)s")
        else:
            formatter = logging.Formatter(PLAIN)
    made.setFormatter(formatter)
    made.addFilter(Redactor())
    made.setLevel(level)
    return made


def log_uncaught() -> None:
    """Send tracebacks of uncaught exceptions (main thread or any other) through the logging
    handlers, so they are redacted like every other line: the default hooks print straight
    to stderr. For ``posd run`` (a test runner keeps its own hooks)."""
    log = logging.getLogger("posd")

    def main_hook(kind: type[BaseException], value: BaseException,
                  tb: TracebackType | None) -> None:
        log.critical("uncaught exception", exc_info=(kind, value, tb))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        # The exception carries its traceback (__traceback__); None only for odd raisers.
        log.error("uncaught %s in thread %s", args.exc_type.__name__, name,
                  exc_info=args.exc_value)

    sys.excepthook = main_hook
    threading.excepthook = thread_hook


def setup_logging(level: int = logging.INFO, log_file: Path | None = None, *,
                  json_stderr: bool = False, json_file: Path | None = None,
                  stderr_level: int | None = None) -> None:
    """stderr for journald (text, or JSON lines); optionally a text file (the demo keeps the
    console for people) and/or a JSON-lines file. Every handler redacts (:class:`Redactor`).
    The CLI and the demo call it; it lives here so that neither imports the other."""
    root = logging.getLogger()
    root.handlers.clear()
    root.addHandler(handler(sys.stderr, as_json=json_stderr,
                            level=level if stderr_level is None else stderr_level))
    root.setLevel(min(level, logging.INFO))
    logging.captureWarnings(True)  # warnings too go through the handlers (and the redactor)
    if log_file is not None:
        root.addHandler(handler(path=log_file))
    if json_file is not None:
        root.addHandler(handler(path=json_file, as_json=True, level=level))
    for noisy in ("apscheduler", "uvicorn", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
