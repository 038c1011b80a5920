# SPDX-License-Identifier: MIT
"""``posd doctor``'s row for Alipay: a signed probe query (keys, app_id, TLS)."""

from __future__ import annotations

from posd.channels.alipay.client import Alipay
from posd.channels.alipay.config import AlipayConfig
from posd.channels.spec import Till
from posd.checks import Check, channel_verdict, fail, probe_trade_no, ok
from posd.core.errors import ConfigError
from posd.core.money import Fen


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
    if section.app_auth_token_file is None:
        return ok("alipay set-up", f"merchant's own app {section.app_id}, public-key mode")
    pid = section.sys_service_provider_id or "no sys_service_provider_id (no ISV commission)"
    return ok("alipay set-up", f"ISV app {section.app_id} acting for a merchant "
              f"(app_auth_token_file), {pid}")
