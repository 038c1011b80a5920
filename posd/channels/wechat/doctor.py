# SPDX-License-Identifier: MIT
"""``posd doctor``'s rows for WeChat Pay: a signed probe query, and the merchant certificate."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from posd.channels.spec import Till
from posd.channels.wechat.client import WechatPay
from posd.channels.wechat.config import WechatConfig
from posd.checks import Check, channel_verdict, fail, ok, probe_trade_no, warn
from posd.config_base import read_secret
from posd.core.errors import ConfigError
from posd.core.money import Fen

#: A merchant certificate expiring within this many days is a warning.
CERT_WARN_DAYS = 30


def checks(section: WechatConfig, till: Till) -> list[Check]:
    found = [probe(section, till), setup(section)]
    if section.cert_file is not None and section.key_file is not None:
        found.append(check_certificate("wechat certificate", section.cert_file, section.key_file))
    return found


def probe(section: WechatConfig, till: Till) -> Check:
    """Query an order that does not exist: a signed "no such order" proves TLS and keys."""
    try:
        client = WechatPay.from_config(section, device_info=till.terminal_id)
    except ConfigError as err:
        return fail("wechat", str(err), "see docs/configuration.md, [channels.wechat]")
    try:
        result = client.query(probe_trade_no(), Fen(1))
    finally:
        client.close()
    return channel_verdict("wechat", result, "a signature that does not verify or SIGNERROR: the "
                           "APIv2 key in api_key_file is not the merchant's (pay.weixin.qq.com, "
                           "API security); other errors: appid and mch_id must belong together "
                           "(and sub_mch_id must be bound to the service provider mch_id)")


def setup(section: WechatConfig) -> Check:
    """Which set-up this is (the probe proved its keys and, in service-provider mode, that
    the sub-merchant answers under the provider)."""
    if section.sub_mch_id:
        detail = (f"service provider {section.mch_id} for sub-merchant {section.sub_mch_id}"
                  + (f", sub_appid {section.sub_appid}" if section.sub_appid else ""))
    else:
        detail = f"direct merchant {section.mch_id}"
    if section.backup_base_url:
        detail += f"; backup host {section.backup_base_url} after a connect error only"
    return ok("wechat set-up", detail)


def check_certificate(name: str, cert_file: Path, key_file: Path) -> Check:
    """The WeChat merchant certificate: parses, matches its key, not (nearly) expired."""
    fix = "download a new API certificate (pay.weixin.qq.com, API security) into cert_file/key_file"
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(
            read_secret(key_file, "channels.wechat.key_file"), password=None)
    except (OSError, ValueError, TypeError, ConfigError) as err:
        return fail(name, f"cannot load {cert_file} / {key_file}: {err}", fix)
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if cert.public_key().public_bytes(der, public) != key.public_key().public_bytes(der, public):
        return fail(name, f"{key_file} is not the key of {cert_file}", fix)
    days = (cert.not_valid_after_utc - datetime.now(UTC)).days
    detail = f"{cert.subject.rfc4514_string()}, valid until {cert.not_valid_after_utc:%Y-%m-%d}"
    if days < 0:
        return fail(name, f"expired: {detail}", fix)
    if days < CERT_WARN_DAYS:
        return warn(name, f"expires in {days} days: {detail}", fix)
    return ok(name, detail)
