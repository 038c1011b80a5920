# SPDX-License-Identifier: MIT
"""``[channels.wechat]``: a WeChat Pay v2 merchant (docs/configuration.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

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
    #: the till's own IP, sent as spbill_create_ip (WeChat requires it). Older name of
    #: ``spbill_create_ip``, used when that one is empty and this one is set.
    client_ip: str = "127.0.0.1"
    #: the calling machine's address in micropay; empty = the till's own address on its
    #: route to the channel (found once, no packet sent), else ``client_ip``.
    spbill_create_ip: str = Field(default="", pattern=r"^([0-9.]{7,15}|[0-9a-fA-F:]{2,39})?$")
    #: service-provider (服务商) mode: the sub-merchant this till sells for (and its appid
    #: when the customer's app id is the sub-merchant's), in every call and its signature.
    sub_mch_id: str = Field(default="", pattern=r"^[0-9]{0,32}$")
    sub_appid: str = Field(default="", max_length=32)
    #: WeChat's backup host (e.g. https://api2.mch.weixin.qq.com): used only after a connect
    #: error at ``base_url`` (nothing was sent), never after a request may have arrived.
    backup_base_url: str = ""

    _paths = field_validator("api_key_file", "cert_file", "key_file", "ca_file", mode="before")(
        optional_path
    )
    _url = field_validator("base_url")(check_url)

    @field_validator("backup_base_url")
    @classmethod
    def _backup(cls, value: str) -> str:
        return check_url(value) if value else value

    @model_validator(mode="after")
    def _required_when_enabled(self) -> WechatConfig:
        self.missing("appid", "mch_id", "api_key_file", "cert_file", "key_file")
        if self.sub_appid and not self.sub_mch_id:
            raise ValueError("sub_appid is for service-provider mode: set sub_mch_id too (the "
                             "sub-merchant's mch_id)")
        if self.backup_base_url and self.backup_base_url == self.base_url:
            raise ValueError("backup_base_url must be another host than base_url")
        return self

    def secret_files(self) -> list[tuple[str, Path | None]]:
        return [("api_key_file", self.api_key_file), ("key_file", self.key_file)]

    def public_files(self) -> list[tuple[str, Path | None]]:
        return [("cert_file", self.cert_file), ("ca_file", self.ca_file)]

    def endpoint(self) -> tuple[str, str | bool]:
        return self.base_url + "/", str(self.ca_file) if self.ca_file else True
