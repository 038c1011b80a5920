# SPDX-License-Identifier: MIT
"""``[channels.alipay]``: an Alipay app in public-key mode (docs/alipay.md)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from posd.config_base import ChannelConfig, check_url, optional_path


class AlipayConfig(ChannelConfig):
    gateway_url: str = "https://openapi.alipay.com/gateway.do"
    app_id: str = ""
    app_private_key_file: Path | None = None
    alipay_public_key_file: Path | None = None
    ca_file: Path | None = None
    #: how long after a payment it may be refunded: the merchant's contract (DESIGN §9)
    refund_window_days: int = Field(default=90, ge=1, le=3 * 365)
    #: an ISV (第三方应用授权) acting for the merchant: the merchant's app_auth_token, a
    #: secret file (0600), sent as a common parameter of every call
    app_auth_token_file: Path | None = None
    #: public-key certificate mode (公钥证书模式), instead of alipay_public_key_file: the app's
    #: certificate (appCertPublicKey_<app_id>.crt), Alipay's (alipayCertPublicKey_RSA2.crt)
    #: and Alipay's root bundle (alipayRootCert.crt), as the Alipay console gives them
    app_cert_file: Path | None = None
    alipay_cert_file: Path | None = None
    alipay_root_cert_file: Path | None = None
    #: the service provider's PID (2088...), sent as extend_params.sys_service_provider_id
    sys_service_provider_id: str = Field(default="", pattern=r"^(2088[0-9]{12})?$")

    _paths = field_validator(
        "app_private_key_file", "alipay_public_key_file", "ca_file", "app_auth_token_file",
        "app_cert_file", "alipay_cert_file", "alipay_root_cert_file", mode="before"
    )(optional_path)
    _url = field_validator("gateway_url")(check_url)

    @model_validator(mode="after")
    def _required_when_enabled(self) -> AlipayConfig:
        if not self.cert_mode:
            self.missing("app_id", "app_private_key_file", "alipay_public_key_file")
            return self
        self.missing("app_id", "app_private_key_file", "app_cert_file", "alipay_cert_file",
                     "alipay_root_cert_file")
        if self.alipay_public_key_file is not None:
            raise ValueError("certificate mode (app_cert_file, alipay_cert_file, "
                             "alipay_root_cert_file) or public-key mode "
                             "(alipay_public_key_file): set one, not both")
        return self

    @property
    def cert_mode(self) -> bool:
        """Public-key certificate mode: any of its three files is set."""
        return any(f is not None for f in (self.app_cert_file, self.alipay_cert_file,
                                            self.alipay_root_cert_file))

    def secret_files(self) -> list[tuple[str, Path | None]]:
        files = [("app_private_key_file", self.app_private_key_file)]
        if self.app_auth_token_file is not None:  # only an ISV has one
            files.append(("app_auth_token_file", self.app_auth_token_file))
        return files

    def public_files(self) -> list[tuple[str, Path | None]]:
        if self.cert_mode:
            return [("app_cert_file", self.app_cert_file),
                    ("alipay_cert_file", self.alipay_cert_file),
                    ("alipay_root_cert_file", self.alipay_root_cert_file), ("ca_file", self.ca_file)]
        return [("alipay_public_key_file", self.alipay_public_key_file),
                ("ca_file", self.ca_file)]

    def refund_window_s(self) -> float:
        return self.refund_window_days * 86400.0

    def endpoint(self) -> tuple[str, str | bool]:
        return self.gateway_url, str(self.ca_file) if self.ca_file else True
