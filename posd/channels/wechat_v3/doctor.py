# SPDX-License-Identifier: MIT
"""``posd doctor``'s rows for WeChat Pay v3: a signed probe query, the set-up, and the
validity of each platform certificate."""

from __future__ import annotations

from datetime import UTC, datetime

from posd.channels.spec import Till
from posd.channels.wechat_v3.client import WechatPayV3
from posd.channels.wechat_v3.config import WechatV3Config
from posd.checks import Check, channel_verdict, fail, ok, probe_trade_no, warn
from posd.core import wechat_v3_wire as wire
from posd.core.errors import ConfigError
from posd.core.money import Fen

#: A platform certificate expiring within this many days is a warning.
CERT_WARN_DAYS = 30
NAME = "wechat_v3"


def checks(section: WechatV3Config, till: Till) -> list[Check]:
    found = [probe(section, till), setup(section)]
    found += [platform_certificate(section, n) for n in range(len(section.platform_cert_files))]
    return found


def probe(section: WechatV3Config, till: Till) -> Check:
    """Query an order that does not exist: a signed ORDER_NOT_EXIST proves the merchant key
    and serial (WeChat checked our signature) and the WeChat Pay key (we checked its)."""
    try:
        client = WechatPayV3.from_config(section, store_id=till.store_id)
    except ConfigError as err:
        return fail(NAME, str(err), "see docs/wechat-v3.md")
    try:
        result = client.query(probe_trade_no(), Fen(1))
    finally:
        client.close()
    return channel_verdict(NAME, result, "SIGN_ERROR or HTTP 401: private_key_file is not the "
                           "key of the API certificate merchant_serial_no names; an answer "
                           "signed with a key posd does not hold: set wechatpay_public_key_file "
                           "and _id (or the current platform_cert_files); other errors: appid "
                           "and mchid (and sub_mchid under the service provider) must belong "
                           "together")


def setup(section: WechatV3Config) -> Check:
    if section.partner:
        detail = (f"partner (service provider) {section.mchid} for sub-merchant "
                  f"{section.sub_mchid}" + (f", sub_appid {section.sub_appid}"
                                            if section.sub_appid else ""))
    else:
        detail = f"direct merchant {section.mchid}"
    keys = []
    if section.wechatpay_public_key_id:
        keys.append(f"WeChat Pay public key {section.wechatpay_public_key_id}")
    if section.platform_cert_files:
        keys.append(f"{len(section.platform_cert_files)} platform certificate(s)")
    detail += f"; requests signed with serial {section.merchant_serial_no.upper()}; answers " \
              f"checked with {' and '.join(keys)}"
    return ok("wechat_v3 set-up", detail)


def platform_certificate(section: WechatV3Config, n: int) -> Check:
    path = section.platform_cert_files[n]
    name = f"wechat_v3 platform certificate {n + 1}"
    fix = ("download the current platform certificates (GET /v3/certificates, or the merchant "
           "portal) into platform_cert_files, or move to the WeChat Pay public key")
    try:
        cert = wire.load_certificate(path.read_bytes())
    except (OSError, wire.WireError) as err:
        return fail(name, f"{path}: {err}", fix)
    now = datetime.now(UTC)
    detail = (f"serial {wire.serial_hex(cert)}, valid {cert.not_valid_before_utc:%Y-%m-%d} to "
              f"{cert.not_valid_after_utc:%Y-%m-%d}")
    if now < cert.not_valid_before_utc:
        return warn(name, f"not valid yet: {detail}", fix)
    days = (cert.not_valid_after_utc - now).days
    if days < 0:
        # Answers signed with it are still checked with its key (WeChat stops using an
        # expired certificate); a public key or a newer certificate is needed beside it.
        return fail(name, f"expired: {detail}", fix)
    if days < CERT_WARN_DAYS:
        return warn(name, f"expires in {days} days: {detail}", fix)
    return ok(name, detail)
