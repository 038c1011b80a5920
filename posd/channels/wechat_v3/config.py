# SPDX-License-Identifier: MIT
"""``[channels.wechat_v3]``: a WeChat Pay API v3 merchant taking payment codes (docs/wechat-v3.md)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from posd.config_base import ChannelConfig, check_url, optional_path



class WechatV3Config(ChannelConfig):
    # Off unless the merchant asks for it: v2 micropay is not deprecated and stays the default.
    enabled: bool = False
    base_url: str = "https://api.mch.weixin.qq.com"
    #: the merchant's (or, in partner mode, the service provider's) appid and mchid
    appid: str = Field(default="", max_length=32)
    mchid: str = Field(default="", pattern=r"^[0-9]{0,32}$")
    #: serial of apiclient_cert.pem, the key the requests are signed with
    merchant_serial_no: str = Field(default="", pattern=r"^([0-9A-Fa-f]{1,40})?$")
    private_key_file: Path | None = None
    #: WeChat Pay public key mode (微信支付公钥, for merchants since late 2024): the key file
    #: and its id, PUB_KEY_ID_...; posd sends the id as Wechatpay-Serial.
    wechatpay_public_key_file: Path | None = None
    wechatpay_public_key_id: str = Field(default="", pattern=r"^(PUB_KEY_ID_[0-9A-Za-z_]+)?$")
    #: or platform certificates (平台证书); during WeChat's switch both may be set, and each
    #: answer is checked with the key its Wechatpay-Serial names.
    platform_cert_files: tuple[Path, ...] = ()
    #: partner (服务商) mode: the sub-merchant this till sells for, and its appid when the
    #: customer's app id is the sub-merchant's.
    sub_mchid: str = Field(default="", pattern=r"^[0-9]{0,32}$")
    sub_appid: str = Field(default="", max_length=32)
    #: scene_info.device_ip; empty = the till's own address on its route to the channel.
    device_ip: str = Field(default="", pattern=r"^([0-9.]{7,15}|[0-9a-fA-F:]{2,39})?$")
    ca_file: Path | None = None

    _paths = field_validator("private_key_file", "wechatpay_public_key_file", "ca_file",
                             mode="before")(optional_path)
    _url = field_validator("base_url")(check_url)

    @field_validator("platform_cert_files", mode="before")
    @classmethod
    def _certs(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return tuple(v for v in value if v != "")
        return value

    @model_validator(mode="after")
    def _required_when_enabled(self) -> WechatV3Config:
        self.missing("appid", "mchid", "merchant_serial_no", "private_key_file")
        if not self.enabled:
            return self
        has_key = self.wechatpay_public_key_file is not None
        if has_key != bool(self.wechatpay_public_key_id):
            raise ValueError("WeChat Pay public key mode needs both wechatpay_public_key_file "
                             "and wechatpay_public_key_id (PUB_KEY_ID_..., shown beside the "
                             "key in the merchant portal)")
        if not has_key and not self.platform_cert_files:
            raise ValueError("set how WeChat Pay's answers are verified: "
                             "wechatpay_public_key_file + wechatpay_public_key_id (public key "
                             "mode), or platform_cert_files (platform certificates), or both "
                             "during a switch")
        if self.sub_appid and not self.sub_mchid:
            raise ValueError("sub_appid is for partner (服务商) mode: set sub_mchid too")
        if self.sub_mchid and self.sub_mchid == self.mchid:
            raise ValueError("sub_mchid must be the sub-merchant's mchid, not the service "
                             "provider's own")
        return self

    @property
    def partner(self) -> bool:
        return bool(self.sub_mchid)

    def secret_files(self) -> list[tuple[str, Path | None]]:
        return [("private_key_file", self.private_key_file)]

    def public_files(self) -> list[tuple[str, Path | None]]:
        files: list[tuple[str, Path | None]] = [("ca_file", self.ca_file)]
        if self.wechatpay_public_key_file is not None:
            files.append(("wechatpay_public_key_file", self.wechatpay_public_key_file))
        files += [(f"platform_cert_files[{n}]", p) for n, p in enumerate(self.platform_cert_files)]
        return files

    def endpoint(self) -> tuple[str, str | bool]:
        return self.base_url + "/", str(self.ca_file) if self.ca_file else True
