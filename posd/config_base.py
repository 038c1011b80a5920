# SPDX-License-Identifier: MIT
"""What every config section is built from: the frozen model, paths, URLs and secret files.

A leaf module, so that a channel package (``posd.channels.wechat.config``) can define its
own ``[channels.NAME]`` section without importing ``posd.config``, which reads the registry
of channels to validate ``[channels]``.
"""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from posd.core.errors import ConfigError
from posd.logs import SECRETS


class ConfigModel(BaseModel):
    """A config section: frozen, and an unknown key is an error naming it."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def optional_path(value: object) -> object:
    """TOML has no null: an empty string means "not set" for optional paths."""
    return None if value == "" else value


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> str:
    """An https:// URL (http:// only on loopback), without its trailing slash."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"must be an https:// URL, got {url!r}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError("http:// is allowed only for 127.0.0.1 / localhost (TLS everywhere else)")
    return url.rstrip("/")


Seconds = Annotated[float, Field(gt=0, le=600)]


class Timeouts(ConfigModel):
    connect_timeout_s: float = Field(default=3.0, gt=0, le=60)
    read_timeout_s: float = Field(default=10.0, gt=0, le=120)


class ChannelConfig(Timeouts):
    """The base of a ``[channels.NAME]`` section (a channel package defines its own)."""

    enabled: bool = True

    def secret_files(self) -> list[tuple[str, Path | None]]:
        """(key, path) of the files whose content is secret: each must be private (0600)
        and is never shown in a log."""
        return []

    def public_files(self) -> list[tuple[str, Path | None]]:
        """(key, path) of the other files it names (certificates, CA bundles)."""
        return []

    def endpoint(self) -> tuple[str, str | bool] | None:
        """(URL, TLS verify) of the channel's server, whose clock ``posd doctor`` reads."""
        return None

    def refund_window_s(self) -> float | None:
        """How long after a payment the merchant's contract allows refunds (None: the
        channel's own limit, ``ChannelSpec.refund_policy``)."""
        return None

    def missing(self, *names: str) -> None:
        """Raise when enabled and any of ``names`` is not set."""
        if self.enabled and (gone := [name for name in names if not getattr(self, name)]):
            raise ValueError(f"enabled but missing: {', '.join(gone)}")


def secret_file_problem(path: Path | None) -> str | None:
    """Why a secret file is unusable, or None: it must exist and be private (0600 or 0400)."""
    if path is None:
        return "not set"
    try:
        info = path.stat()
    except OSError as err:
        return f"{path}: {err.strerror or err}"
    except ValueError:  # an embedded NUL: no such file can exist
        return f"{str(path)!r}: not a valid path"
    if not stat.S_ISREG(info.st_mode):
        return f"{path}: not a regular file"
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"{path}: readable by group/others (mode {stat.S_IMODE(info.st_mode):04o}); run chmod 600"
    return None


def read_secret(path: Path | None, key: str) -> bytes:
    """Read a secret file after checking its mode. The content is never logged."""
    if (problem := secret_file_problem(path)) is not None:
        raise ConfigError(f"{key}: {problem}")
    assert path is not None  # secret_file_problem() returned None
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{key}: {path}: {err.strerror or err}") from err
    SECRETS.add(data)  # the log redactor never shows it (posd.logs)
    return data
