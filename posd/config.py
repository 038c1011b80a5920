# SPDX-License-Identifier: MIT
"""config.toml -> validated, frozen objects, read once at start-up.

An unknown or misspelt key is an error naming its path (``scanner.devcie``); so is a secret
file that is missing or readable by group/others. Every error is a :class:`ConfigError`, on
which the CLI exits 78 (EX_CONFIG) so systemd does not restart-loop.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import tomllib
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from posd.codes import DEFAULT_RULES, PrefixRule
from posd.errors import ConfigError

DEFAULT_PATH = Path("/etc/posd/config.toml")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _optional_path(value: object) -> object:
    """TOML has no null: an empty string means "not set" for optional paths."""
    return None if value == "" else value


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"must be an https:// URL, got {url!r}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError("http:// is allowed only for 127.0.0.1 / localhost (TLS everywhere else)")
    return url.rstrip("/")


Seconds = Annotated[float, Field(gt=0, le=600)]


class StoreConfig(_Model):
    id: str = Field(pattern=r"^[0-9A-Za-z]{1,8}$")
    name: str = Field(min_length=1, max_length=64)
    terminal_id: str = Field(pattern=r"^[0-9A-Za-z]{1,6}$")
    address: str = ""


class PaymentConfig(_Model):
    #: pay call -> reverse if still not final. WeChat forbids a reverse before 15 s.
    deadline_s: float = Field(default=30.0, ge=16, le=300)
    #: delays between queries while the customer confirms; the last one repeats.
    query_intervals_s: tuple[Seconds, ...] | None = None
    #: the same code scanned again within this window is one read.
    debounce_s: float = Field(default=2.0, ge=0, le=30)
    #: a code read longer ago than this is stale and dropped.
    max_code_age_s: float = Field(default=5.0, gt=0, le=60)


class DatabaseConfig(_Model):
    path: Path


class ApiConfig(_Model):
    listen: str = "127.0.0.1:8637"
    token_file: Path

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"must be HOST:PORT, got {value!r}")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class _Timeouts(_Model):
    connect_timeout_s: float = Field(default=3.0, gt=0, le=60)
    read_timeout_s: float = Field(default=10.0, gt=0, le=120)


class WechatConfig(_Timeouts):
    enabled: bool = True
    base_url: str = "https://api.mch.weixin.qq.com"
    appid: str = ""
    mch_id: str = ""
    api_key_file: Path | None = None
    sign_type: Literal["HMAC-SHA256", "MD5"] = "HMAC-SHA256"
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None
    #: the till's own IP, sent as spbill_create_ip (WeChat requires it).
    client_ip: str = "127.0.0.1"

    _paths = field_validator("api_key_file", "cert_file", "key_file", "ca_file", mode="before")(
        _optional_path
    )
    _url = field_validator("base_url")(_check_url)

    @model_validator(mode="after")
    def _required_when_enabled(self) -> WechatConfig:
        if self.enabled:
            missing = [
                name
                for name in ("appid", "mch_id", "api_key_file", "cert_file", "key_file")
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError(f"enabled but missing: {', '.join(missing)}")
        return self


class AlipayConfig(_Timeouts):
    enabled: bool = True
    gateway_url: str = "https://openapi.alipay.com/gateway.do"
    app_id: str = ""
    app_private_key_file: Path | None = None
    alipay_public_key_file: Path | None = None
    ca_file: Path | None = None

    _paths = field_validator(
        "app_private_key_file", "alipay_public_key_file", "ca_file", mode="before"
    )(_optional_path)
    _url = field_validator("gateway_url")(_check_url)

    @model_validator(mode="after")
    def _required_when_enabled(self) -> AlipayConfig:
        if self.enabled:
            missing = [
                name
                for name in ("app_id", "app_private_key_file", "alipay_public_key_file")
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError(f"enabled but missing: {', '.join(missing)}")
        return self


class ChannelsConfig(_Model):
    wechat: WechatConfig | None = None
    alipay: AlipayConfig | None = None

    @property
    def enabled(self) -> tuple[str, ...]:
        names = []
        if self.wechat is not None and self.wechat.enabled:
            names.append("wechat")
        if self.alipay is not None and self.alipay.enabled:
            names.append("alipay")
        return tuple(names)


class ScannerConfig(_Model):
    kind: Literal["hid", "serial", "console", "none"] = "none"
    device: str | None = None
    baudrate: int = Field(default=9600, gt=0)

    @model_validator(mode="after")
    def _device_for_hardware(self) -> ScannerConfig:
        if self.kind in ("hid", "serial") and not self.device:
            raise ValueError(f"kind = {self.kind!r} needs device (a /dev/.../by-id/... path)")
        return self


class PrinterConfig(_Model):
    kind: Literal["usb", "serial", "network", "file", "console", "none"] = "console"
    host: str = ""
    port: int = Field(default=9100, gt=0, le=65535)
    device: str = ""
    #: where receipts are also written as text (the demo keeps them); empty = nowhere.
    receipt_dir: Path | None = None

    _dir = field_validator("receipt_dir", mode="before")(_optional_path)


class HqConfig(_Model):
    url: str = ""
    token_file: Path | None = None

    _path = field_validator("token_file", mode="before")(_optional_path)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_url(value) if value else value


class CodeRuleConfig(_Model):
    channel: str = Field(pattern=r"^[a-z]+$")
    prefixes: tuple[Annotated[str, Field(pattern=r"^[0-9]{1,4}$")], ...] = Field(min_length=1)
    min_length: int = Field(ge=8, le=32)
    max_length: int = Field(ge=8, le=32)


class CodesConfig(_Model):
    rules: tuple[CodeRuleConfig, ...] | None = None

    @property
    def prefix_rules(self) -> tuple[PrefixRule, ...]:
        if self.rules is None:
            return DEFAULT_RULES
        return tuple(
            PrefixRule(r.channel, r.prefixes, r.min_length, r.max_length) for r in self.rules
        )


class Config(_Model):
    store: StoreConfig
    payment: PaymentConfig = PaymentConfig()
    database: DatabaseConfig
    api: ApiConfig
    channels: ChannelsConfig = ChannelsConfig()
    scanner: ScannerConfig = ScannerConfig()
    printer: PrinterConfig = PrinterConfig()
    hq: HqConfig = HqConfig()
    codes: CodesConfig = CodesConfig()

    @model_validator(mode="after")
    def _one_channel(self) -> Config:
        if not self.channels.enabled:
            raise ValueError("no payment channel is enabled: set [channels.wechat] or [channels.alipay]")
        return self


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
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror or err}") from err
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{path}: {_format_validation(err)}") from None
    problems = check_files(config)
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return config


def _secret_files(config: Config) -> list[tuple[str, Path | None]]:
    files: list[tuple[str, Path | None]] = [("api.token_file", config.api.token_file)]
    if (wx := config.channels.wechat) is not None and wx.enabled:
        files += [("channels.wechat.api_key_file", wx.api_key_file),
                  ("channels.wechat.key_file", wx.key_file)]
    if (ali := config.channels.alipay) is not None and ali.enabled:
        files.append(("channels.alipay.app_private_key_file", ali.app_private_key_file))
    if config.hq.url:
        files.append(("hq.token_file", config.hq.token_file))
    return files


def _public_files(config: Config) -> list[tuple[str, Path | None]]:
    files: list[tuple[str, Path | None]] = []
    if (wx := config.channels.wechat) is not None and wx.enabled:
        files += [("channels.wechat.cert_file", wx.cert_file), ("channels.wechat.ca_file", wx.ca_file)]
    if (ali := config.channels.alipay) is not None and ali.enabled:
        files += [("channels.alipay.alipay_public_key_file", ali.alipay_public_key_file),
                  ("channels.alipay.ca_file", ali.ca_file)]
    return [(key, path) for key, path in files if path is not None]


def secret_file_problem(path: Path | None) -> str | None:
    """Why a secret file is unusable, or None: it must exist and be private (0600 or 0400)."""
    if path is None:
        return "not set"
    try:
        info = path.stat()
    except OSError as err:
        return f"{path}: {err.strerror or err}"
    if not stat.S_ISREG(info.st_mode):
        return f"{path}: not a regular file"
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"{path}: readable by group/others (mode {stat.S_IMODE(info.st_mode):04o}); run chmod 600"
    return None


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
    token = read_secret(config.api.token_file, "api.token_file").decode("utf-8", "replace").strip()
    if len(token) < 16:
        raise ConfigError("api.token_file: the token must be at least 16 characters")
    return token


def read_secret(path: Path | None, key: str) -> bytes:
    """Read a secret file after checking its mode. The content is never logged."""
    if (problem := secret_file_problem(path)) is not None:
        raise ConfigError(f"{key}: {problem}")
    assert path is not None  # secret_file_problem() returned None
    try:
        return path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{key}: {path}: {err.strerror or err}") from err
