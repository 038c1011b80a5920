# SPDX-License-Identifier: MIT
"""config.toml -> validated, frozen objects, read once at start-up.

An unknown or misspelt key is an error naming its path (``scanner.devcie``); so is a secret
file that is missing or readable by group/others. Every error is a :class:`ConfigError`, on
which the CLI exits 78 (EX_CONFIG) so systemd does not restart-loop.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    ConfigDict, Field, ValidationError, create_model, field_validator, model_validator,
)

from posd.channels import registry
from posd.config_base import (
    ChannelConfig, ConfigModel, Seconds, check_url, is_loopback_host, optional_path, read_secret,
    secret_file_problem,
)
from posd.core.codes import PrefixRule
from posd.core.errors import ConfigError
from posd.core.framing import BYTE_TERMINATORS, IDLE, KEY_TERMINATORS
from posd.logs import SECRETS

DEFAULT_PATH = Path("/etc/posd/config.toml")





class StoreConfig(ConfigModel):
    id: str = Field(pattern=r"^[0-9A-Za-z]{1,8}$")
    name: str = Field(min_length=1, max_length=64)
    terminal_id: str = Field(pattern=r"^[0-9A-Za-z]{1,6}$")
    address: str = ""
    #: DESIGN §2 rule 9: every time a person reads, business days, reports, HQ day totals
    timezone: str = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"{value!r} is not an IANA time zone name (e.g. "
                             "'Asia/Shanghai')") from err
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class PaymentConfig(ConfigModel):
    #: pay call -> reverse if still not final. WeChat forbids a reverse before 15 s.
    deadline_s: float = Field(default=30.0, ge=16, le=300)
    #: delays between queries while the customer confirms; the last one repeats.
    query_intervals_s: tuple[Seconds, ...] | None = None
    #: the same code scanned again within this window is one read.
    debounce_s: float = Field(default=2.0, ge=0, le=30)
    #: a code read longer ago than this is stale and dropped.
    max_code_age_s: float = Field(default=5.0, gt=0, le=60)
    #: a sale still waiting for a code this long after it was created is cancelled by posd
    awaiting_code_s: float = Field(default=600.0, ge=10, le=86400)


class DatabaseConfig(ConfigModel):
    path: Path


class ApiConfig(ConfigModel):
    listen: str = "127.0.0.1:8637"
    token_file: Path
    #: the manager's token (refunds, resolve); None: nobody can refund through posd
    manager_token_file: Path | None = None
    #: HTTPS for the local API; required to listen on anything but loopback (the bearer
    #: token would otherwise cross the shop's network in clear text).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    _tls = field_validator("tls_cert_file", "tls_key_file", "manager_token_file",
                           mode="before")(optional_path)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"must be HOST:PORT, got {value!r}")
        return value

    @model_validator(mode="after")
    def _tls_off_loopback(self) -> ApiConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("api.tls_cert_file and api.tls_key_file go together")
        if self.tls_cert_file is None and not is_loopback_host(self.host):
            raise ValueError(
                f"api.listen {self.listen!r} is not a loopback address: set api.tls_cert_file "
                "and api.tls_key_file (HTTPS), or listen on 127.0.0.1")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


@functools.cache
def _sections_model(channels: tuple[tuple[str, type[ChannelConfig]], ...]) -> type[ConfigModel]:
    fields: dict[str, Any] = {name: (model | None, None) for name, model in channels}
    return create_model("Channels", __base__=ConfigModel, **fields)


class ChannelsConfig(ConfigModel):
    """``[channels.NAME]`` for each channel in the registry (posd.channels.registry): its
    section is validated by that channel's own model; an unknown name is an error."""

    model_config = ConfigDict(frozen=True, extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _by_registry(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        # One field per registered channel, so that an error names its path
        # (channels.wechat.sign_type) and an unknown channel is an unknown key.
        parsed = _sections_model(tuple((n, registry.get(n).config) for n in registry.names()))
        found = parsed.model_validate(data)
        return {name: getattr(found, name) for name in data}

    if TYPE_CHECKING:
        def __getattr__(self, name: str) -> Any: ...

    def get(self, name: str) -> ChannelConfig | None:
        """The section of channel ``name``, None when config.toml has none."""
        extra = self.__pydantic_extra__ or {}
        section = extra.get(name)
        return section if isinstance(section, ChannelConfig) else None

    def sections(self) -> dict[str, ChannelConfig]:
        """Every enabled channel's section, in the registry's order."""
        found = {name: self.get(name) for name in registry.names()}
        return {name: section for name, section in found.items()
                if section is not None and section.enabled}

    @property
    def enabled(self) -> tuple[str, ...]:
        return tuple(self.sections())


class ScannerConfig(ConfigModel):
    kind: Literal["hid", "serial", "console", "none"] = "none"
    #: tells several scanners apart in logs and /v1/health (``scanner.NAME``).
    name: str = Field(default="", pattern=r"^[0-9A-Za-z_-]{0,32}$")
    device: str | None = None
    # hid (evdev): device and/or match_* pick the input device; all given must match.
    match_name: str = ""
    match_vendor_product: str = Field(default="", pattern=r"^([0-9a-fA-F]{4}:[0-9a-fA-F]{4})?$")
    grab: bool = True
    key_gap_ms: int = Field(default=200, ge=10, le=10_000)
    # serial (pyserial)
    baudrate: int = Field(default=9600, gt=0)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["none", "even", "odd", "mark", "space"] = "none"
    stopbits: float = 1
    idle_gap_ms: int = Field(default=50, ge=5, le=10_000)
    #: empty = the kind's default (hid: enter, kpenter, tab; serial: cr, lf).
    terminators: tuple[str, ...] = ()

    @field_validator("stopbits")
    @classmethod
    def _stopbits(cls, value: float) -> float:
        if value not in (1, 1.5, 2):
            raise ValueError(f"must be 1, 1.5 or 2, got {value}")
        return value

    @model_validator(mode="after")
    def _device_for_hardware(self) -> ScannerConfig:
        if self.kind == "serial" and not self.device:
            raise ValueError("kind = 'serial' needs device (a /dev/serial/by-id/... path)")
        if self.kind == "hid" and not (self.device or self.match_name or self.match_vendor_product):
            raise ValueError("kind = 'hid' needs device (a /dev/input/by-id/... path), "
                             "match_name or match_vendor_product")
        allowed = {"hid": set(KEY_TERMINATORS), "serial": {*BYTE_TERMINATORS, IDLE}}.get(
            self.kind, set())
        if bad := [t for t in self.terminators if t not in allowed]:
            raise ValueError(f"terminators {bad} not allowed for kind = {self.kind!r} "
                             f"(allowed: {sorted(allowed) or 'none'})")
        return self


class PrinterConfig(ConfigModel):
    """The receipt printer (posd.devices.printers, docs/printing.md)."""

    kind: Literal["usb", "serial", "network", "file", "console", "none"] = "console"
    host: str = ""
    port: int = Field(default=9100, gt=0, le=65535)
    #: serial: /dev/serial/by-id/...; file: e.g. /dev/usb/lp0
    device: str = ""
    #: where receipts are also written as text (the demo keeps them); empty = nowhere.
    receipt_dir: Path | None = None
    usb_vendor_id: int | None = Field(default=None, ge=0, le=0xFFFF)
    usb_product_id: int | None = Field(default=None, ge=0, le=0xFFFF)
    usb_in_ep: int = Field(default=0x82, ge=0, le=0xFF)
    usb_out_ep: int = Field(default=0x01, ge=0, le=0xFF)
    baudrate: int = Field(default=9600, gt=0)
    #: connect and write time limit (network, USB, serial); a slow printer fails, retried.
    timeout_s: float = Field(default=5.0, gt=0, le=120)
    #: ask DLE EOT before each job; false for printers that never answer (status unknown).
    status_query: bool = True
    status_timeout_s: float = Field(default=1.0, gt=0, le=30)
    #: ask the status this often while idle, for /v1/health; 0 = only before a job.
    status_every_s: float = Field(default=30.0, ge=0, le=3600)
    #: python-escpos printer profile (capabilities.json), e.g. "TM-T88V", "POS-5890".
    profile: str = "default"
    #: gb18030: text sent as GB18030 (Chinese printers); codepages: python-escpos code pages.
    encoding: Literal["gb18030", "codepages"] = "gb18030"
    #: send FS & (Chinese mode on) before and FS . after each job; off for printers that
    #: start in Chinese mode or misread it.
    chinese_mode: bool = True
    #: native: the printer draws the QR code (GS ( k); image: sent as a raster image.
    qr: Literal["native", "image"] = "native"
    qr_size: int = Field(default=6, ge=1, le=16)
    cut: bool = True
    retry_base_s: float = Field(default=2.0, gt=0, le=600)
    retry_max_s: float = Field(default=60.0, gt=0, le=3600)
    #: a receipt not printed this long after it was queued is given up (reprint it).
    receipt_expiry_s: float = Field(default=600.0, gt=0, le=86400)
    #: how often the worker looks for jobs queued by other processes (posd receipt --print).
    poll_s: float = Field(default=2.0, gt=0, le=60)

    _dir = field_validator("receipt_dir", mode="before")(optional_path)

    @model_validator(mode="after")
    def _where(self) -> PrinterConfig:
        needs = {"network": ("host",), "usb": ("usb_vendor_id", "usb_product_id"),
                 "serial": ("device",), "file": ("device",)}.get(self.kind, ())
        if missing := [name for name in needs if getattr(self, name) in (None, "")]:
            raise ValueError(f"kind = {self.kind!r} needs {' and '.join(missing)}")
        return self


class ReceiptConfig(ConfigModel):
    """What receipts look like and which sales get one (posd.core.receipt)."""

    language: Literal["en", "zh"] = "en"
    paper_mm: Literal[58, 80] = 58
    #: characters per line; 0 = from paper_mm (58 mm: 32, 80 mm: 48).
    columns: int = Field(default=0, ge=0, le=64)
    qr: bool = True
    print_declined: bool = True
    print_reversed: bool = True
    print_needs_attention: bool = True
    footer: str = Field(default="", max_length=200)
    #: a TTF/OTF/TTC font with Chinese glyphs for PNG previews; empty = look for one.
    png_font_file: Path | None = None

    _font = field_validator("png_font_file", mode="before")(optional_path)

    @property
    def line_columns(self) -> int:
        return self.columns or {58: 32, 80: 48}[self.paper_mm]


class ReportConfig(ConfigModel):
    """The daily summary (posd.core.report): business day and automatic printing."""

    #: the business day runs from this hour to the same hour the next day (0 = midnight).
    business_day_cutoff_hour: int = Field(default=0, ge=0, le=23)
    #: "HH:MM" (local time) to print the Z-report automatically; empty = never.
    auto_print_at: str = Field(default="", pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9])?$")


class HqConfig(ConfigModel):
    """HQ sync (posd.sync, docs/hq-sync.md)."""

    url: str = ""
    token_file: Path | None = None
    #: key of the body's HMAC-SHA256 signature; None: the bearer token is the key.
    hmac_key_file: Path | None = None
    ca_file: Path | None = None
    batch_size: int = Field(default=500, ge=1, le=1000)
    #: a push at least this often (and at once after each final sale).
    interval_s: float = Field(default=60.0, gt=0, le=3600)
    connect_timeout_s: float = Field(default=5.0, gt=0, le=60)
    read_timeout_s: float = Field(default=30.0, gt=0, le=300)
    #: while HQ is down: wait about initial, 2 x initial, 4 x ... up to max between tries.
    backoff_initial_s: float = Field(default=2.0, gt=0, le=600)
    backoff_max_s: float = Field(default=300.0, gt=0, le=3600)
    #: acknowledged records are kept this long, then deleted (unacknowledged: never).
    keep_acked_days: float = Field(default=30.0, ge=1, le=3650)

    _path = field_validator("token_file", "hmac_key_file", "ca_file", mode="before")(
        optional_path)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value) if value else value


class ReconcileConfig(ConfigModel):
    """The daily reconciliation against the channels' bills (posd.reconcile, DESIGN §10)."""

    enabled: bool = True
    #: "HH:MM" Beijing time (the channels' bill day): bills are ready after about 09:00-10:00;
    #: a day whose bill is not there yet is tried again every ``retry_every_min``.
    at: str = Field(default="10:30", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    retry_every_min: float = Field(default=30.0, ge=1, le=720)
    #: where the bills are kept verbatim; empty = ``bills/`` beside the database.
    bills_dir: Path | None = None

    _path = field_validator("bills_dir", mode="before")(optional_path)


class CodeRuleConfig(ConfigModel):
    channel: str = Field(pattern=r"^[a-z]+$")
    prefixes: tuple[Annotated[str, Field(pattern=r"^[0-9]{1,4}$")], ...] = Field(min_length=1)
    min_length: int = Field(ge=8, le=32)
    max_length: int = Field(ge=8, le=32)


class CodesConfig(ConfigModel):
    rules: tuple[CodeRuleConfig, ...] | None = None

    @property
    def prefix_rules(self) -> tuple[PrefixRule, ...]:
        if self.rules is None:
            return registry.code_rules()
        return tuple(
            PrefixRule(r.channel, r.prefixes, r.min_length, r.max_length) for r in self.rules
        )


class LogConfig(ConfigModel):
    """Log output (posd.logs): stderr, which systemd hands to journald; optionally JSON lines."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    #: stderr as "text" (with journald's priority prefix under systemd) or "json" lines.
    format: Literal["text", "json"] = "text"
    #: also append JSON lines to this file (e.g. /var/log/posd/posd.jsonl); empty = no file.
    json_file: Path | None = None

    _file = field_validator("json_file", mode="before")(optional_path)


class Config(ConfigModel):
    store: StoreConfig
    payment: PaymentConfig = PaymentConfig()
    database: DatabaseConfig
    api: ApiConfig
    channels: ChannelsConfig = ChannelsConfig()
    scanner: ScannerConfig = ScannerConfig()
    #: more scanners at the same counter, one ``[[scanners]]`` table each (same keys).
    scanners: tuple[ScannerConfig, ...] = ()
    printer: PrinterConfig = PrinterConfig()
    receipt: ReceiptConfig = ReceiptConfig()
    report: ReportConfig = ReportConfig()
    hq: HqConfig = HqConfig()
    reconcile: ReconcileConfig = ReconcileConfig()
    codes: CodesConfig = CodesConfig()
    log: LogConfig = LogConfig()

    @model_validator(mode="after")
    def _one_channel(self) -> Config:
        if not self.channels.enabled:
            names = " or ".join(f"[channels.{name}]" for name in registry.names())
            raise ValueError(f"no payment channel is enabled: set {names}")
        return self

    @model_validator(mode="after")
    def _distinct_scanners(self) -> Config:
        if any(s.kind == "console" for s in self.scanners):
            raise ValueError("scanners: kind = 'console' only in [scanner] (there is one stdin)")
        labels = [label for label, _ in self.all_scanners]
        if dupes := sorted({x for x in labels if labels.count(x) > 1}):
            raise ValueError(f"scanners: name used twice: {', '.join(dupes)}")
        return self

    @property
    def all_scanners(self) -> tuple[tuple[str, ScannerConfig], ...]:
        """(label, config) of every scanner: ``[scanner]`` then each ``[[scanners]]``.

        The label names it in logs and /v1/health: ``scanner`` for the first unnamed one,
        ``scanner.NAME`` for a named one, else ``scanner.N`` by position (1-based).
        """
        found = [s for s in (self.scanner, *self.scanners) if s.kind != "none"]
        return tuple(
            (f"scanner.{s.name}" if s.name else "scanner" if i == 0 else f"scanner.{i + 1}", s)
            for i, s in enumerate(found))


def _format_validation(err: ValidationError) -> str:
    lines = []
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        what = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        lines.append(f"{where}: {what}")
    return "; ".join(lines)


def find_path(explicit: str | os.PathLike[str] | None) -> Path:
    """``-c``, else ``$POSD_CONFIG``, else /etc/posd/config.toml."""
    if explicit:
        return Path(explicit)
    if env := os.environ.get("POSD_CONFIG"):
        return Path(env)
    return DEFAULT_PATH


def load(path: Path) -> Config:
    """Read and validate config.toml, then check the files it names. Raises ConfigError."""
    config = parse(path)
    problems = check_files(config)
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    remember_secrets(config)
    return config


def parse(path: Path) -> Config:
    """Read and validate config.toml, without looking at the files it names (posd doctor
    checks those apart). Raises ConfigError."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror or err}") from err
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err
    except RecursionError as err:  # tomllib recurses into nested arrays and inline tables
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from err
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{path}: {_format_validation(err)}") from None


def remember_secrets(config: Config) -> None:
    """Tell the log redactor (posd.logs) every secret the config names, whoever reads it."""
    for _, path in _secret_files(config):
        if path is not None:
            with contextlib.suppress(OSError):  # check_files() passed; a race is not ours
                SECRETS.add(path.read_bytes())


def _secret_files(config: Config) -> list[tuple[str, Path | None]]:
    files: list[tuple[str, Path | None]] = [("api.token_file", config.api.token_file)]
    if config.api.manager_token_file is not None:
        files.append(("api.manager_token_file", config.api.manager_token_file))
    if config.api.tls_key_file is not None:
        files.append(("api.tls_key_file", config.api.tls_key_file))
    for name, section in config.channels.sections().items():
        files += [(f"channels.{name}.{key}", path) for key, path in section.secret_files()]
    if config.hq.url:
        files.append(("hq.token_file", config.hq.token_file))
        if config.hq.hmac_key_file is not None:
            files.append(("hq.hmac_key_file", config.hq.hmac_key_file))
    return files


def _public_files(config: Config) -> list[tuple[str, Path | None]]:
    files: list[tuple[str, Path | None]] = [("api.tls_cert_file", config.api.tls_cert_file)]
    for name, section in config.channels.sections().items():
        files += [(f"channels.{name}.{key}", path) for key, path in section.public_files()]
    if config.hq.url:
        files.append(("hq.ca_file", config.hq.ca_file))
    return [(key, path) for key, path in files if path is not None]


def check_files(config: Config) -> list[str]:
    """Every named file that is missing or (for secrets) not private, as 'key: problem'."""
    problems = []
    for key, path in _secret_files(config):
        if (problem := secret_file_problem(path)) is not None:
            problems.append(f"{key}: {problem}")
    for key, path in _public_files(config):
        if path is not None and not path.is_file():
            problems.append(f"{key}: {path}: no such file")
    return problems


def read_api_token(config: Config) -> str:
    """The local API's bearer token (at least 16 characters), shared by daemon and CLI."""
    return _token(config.api.token_file, "api.token_file")


def read_manager_token(config: Config) -> str | None:
    """The manager's token (None when ``api.manager_token_file`` is not set); it must differ
    from the cashier's, or a cashier could refund."""
    if config.api.manager_token_file is None:
        return None
    token = _token(config.api.manager_token_file, "api.manager_token_file")
    if token == read_api_token(config):
        raise ConfigError("api.manager_token_file: the manager token must differ from the "
                          "cashier's (api.token_file)")
    return token


def _token(path: Path | None, key: str) -> str:
    token = read_secret(path, key).decode("utf-8", "replace").strip()
    if len(token) < 16:
        raise ConfigError(f"{key}: the token must be at least 16 characters")
    return token
