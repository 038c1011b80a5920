# SPDX-License-Identifier: MIT
"""``posd doctor``'s row for Alipay: a signed probe query (keys, app_id, TLS)."""

from __future__ import annotations

from datetime import UTC, datetime

from posd.channels.alipay.client import Alipay, read_cert_mode
from posd.channels.alipay.config import AlipayConfig
from posd.channels.spec import Till
from posd.checks import Check, channel_verdict, fail, ok, probe_trade_no, warn
from posd.core.errors import ConfigError
from posd.core.money import Fen


#: Alipay's certificate expiring within this many days is a warning.
CERT_WARN_DAYS = 30


def checks(section: AlipayConfig, till: Till) -> list[Check]:
    """Query an order that does not exist: a signed "no such order" proves TLS and keys."""
    try:
        client = Alipay.from_config(section, store_id=till.store_id,
                                    terminal_id=till.terminal_id)
    except ConfigError as err:
        return [fail("alipay", str(err), "see docs/alipay.md")]
    try:
        result = client.query(probe_trade_no(), Fen(1))
    finally:
        client.close()
    return [channel_verdict("alipay", result, "invalid-signature (40002): app_private_key_file "
                            "does not match the public key uploaded for app_id; an answer that "
                            "does not verify: alipay_public_key_file must hold *Alipay's* public "
                            "key; invalid-app-auth-token: the merchant's authorisation in "
                            "app_auth_token_file is not (or no longer) valid for app_id"),
            setup(section)]


def setup(section: AlipayConfig) -> Check:
    """Which set-up this is (the probe above proved it with a signed call)."""
    mode = "public-key mode"
    if section.cert_mode:
        try:
            certs = read_cert_mode(section)
        except ConfigError as err:
            return fail("alipay set-up", str(err), "download the three certificates again "
                        "from the Alipay console (docs/alipay.md, certificate mode)")
        days = (certs.alipay_cert_not_after - datetime.now(UTC)).days
        mode = (f"certificate mode: app_cert_sn {certs.app_cert_sn}, alipay_cert_sn "
                f"{certs.alipay_cert_sn} (valid until {certs.alipay_cert_not_after:%Y-%m-%d}), "
                f"alipay_root_cert_sn {certs.alipay_root_cert_sn}")
        if days < CERT_WARN_DAYS:
            return warn("alipay set-up", f"Alipay's certificate expires in {days} days; {mode}",
                        "download Alipay's new certificate into alipay_cert_file")
    if section.app_auth_token_file is None:
        return ok("alipay set-up", f"merchant's own app {section.app_id}, {mode}")
    pid = section.sys_service_provider_id or "no sys_service_provider_id (no ISV commission)"
    return ok("alipay set-up", f"ISV app {section.app_id} acting for a merchant "
              f"(app_auth_token_file), {pid}, {mode}")
