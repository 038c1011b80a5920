# SPDX-License-Identifier: MIT
"""``[channels.wechat]``: a WeChat Pay v2 merchant (docs/configuration.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import field_validator, model_validator

from posd.config_base import ChannelConfig, check_url, optional_path


class WechatConfig(ChannelConfig):
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
        optional_path
    )
    _url = field_validator("base_url")(check_url)

    @model_validator(mode="after")
    def _required_when_enabled(self) -> WechatConfig:
        self.missing("appid", "mch_id", "api_key_file", "cert_file", "key_file")
        return self

    def secret_files(self) -> list[tuple[str, Path | None]]:
        return [("api_key_file", self.api_key_file), ("key_file", self.key_file)]

    def public_files(self) -> list[tuple[str, Path | None]]:
        return [("cert_file", self.cert_file), ("ca_file", self.ca_file)]

    def endpoint(self) -> tuple[str, str | bool]:
        return self.base_url + "/", str(self.ca_file) if self.ca_file else True
