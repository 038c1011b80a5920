# SPDX-License-Identifier: MIT
"""Test helpers shared by shell tests, benchmarks' smoke tests and the crash test: a real
simulator over HTTPS with client certificates (and, given Alipay keys, Alipay's gateway.do),
and posd configs that point at it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from posd.channels.simulator import AlipayKeys, Simulator, TestPki, WechatSandbox
from posd.channels.wechat_v3.sandbox_keys import WechatV3Keys
from posd.channels.wechat_v3.simulator import WechatV3Sandbox
from posd.config import Config
from posd.core.sale import Policy

WECHAT = WechatSandbox("wx2421b1c4370ec43b", "10000100", "sandboxkeysandboxkeysandboxkey12")

#: Fast timing for tests: both sides are scaled together (the simulator refuses a reverse
#: earlier than ``MIN_REVERSE`` after the pay call, like WeChat's 15 s).
MIN_REVERSE = 1.0
FAST = Policy(deadline_s=2.5, query_intervals_s=(0.2,), pay_retry_delay_s=0.1,
              min_reverse_delay_s=MIN_REVERSE + 0.2, reverse_backoff_s=(0.2, 0.4), late_trade_s=1.0)
#: Alipay's cancel waits as long as WeChat's reverse (posd.core.sale.REVERSE_DELAY_S).
FAST_ALIPAY = FAST
ALIPAY_APP_ID = "2021000000000001"


def alipay_section(sim_url: str, keys: AlipayKeys, pki: TestPki, *,
                   read_timeout_s: float = 1.0) -> dict[str, Any]:
    """``[channels.alipay]`` for a posd that talks to the simulator's gateway.do."""
    return {
        "gateway_url": f"{sim_url}/gateway.do", "app_id": ALIPAY_APP_ID,
        "app_private_key_file": str(keys.app_private_key_file),
        "alipay_public_key_file": str(keys.alipay_public_key_file),
        "ca_file": str(pki.ca_cert_file), "connect_timeout_s": 1.0,
        "read_timeout_s": read_timeout_s,
    }


#: the v3 merchant: the same merchant account as WECHAT's (the simulator plays one account
#: behind both APIs), with its own appid for v3
WECHAT_V3_APPID = "wx8888888888888888"
SUB_MCHID = "1900000109"


def wechat_v3_sandbox(keys: WechatV3Keys, *, mode: str = "public_key",
                      sub_mchids: frozenset[str] = frozenset()) -> WechatV3Sandbox:
    return replace(keys.sandbox(WECHAT_V3_APPID, WECHAT.mch_id, mode=mode),
                   sub_mchids=sub_mchids)


def wechat_v3_section(sim_url: str, keys: WechatV3Keys, pki: TestPki, *,
                      mode: str = "public_key", partner: bool = False,
                      read_timeout_s: float = 1.0) -> dict[str, Any]:
    """``[channels.wechat_v3]`` for a posd that talks to the simulator's v3 endpoints:
    ``mode`` public_key, platform (certificates) or both (during WeChat's switch)."""
    section: dict[str, Any] = {
        "enabled": True, "base_url": sim_url, "appid": WECHAT_V3_APPID, "mchid": WECHAT.mch_id,
        "merchant_serial_no": keys.merchant_serial_no,
        "private_key_file": str(keys.merchant_key_file), "ca_file": str(pki.ca_cert_file),
        "connect_timeout_s": 1.0, "read_timeout_s": read_timeout_s,
    }
    if mode in ("public_key", "both"):
        section |= {"wechatpay_public_key_file": str(keys.public_key_file),
                    "wechatpay_public_key_id": keys.public_key_id}
    if mode in ("platform", "both"):
        section["platform_cert_files"] = [str(keys.platform_cert_file)]
    if partner:
        section["sub_mchid"] = SUB_MCHID
    return section


def secret(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def make_config(tmp: Path, sim_url: str, pki: TestPki, *, sign_type: str = "HMAC-SHA256",
                read_timeout_s: float = 1.0, api_port: int = 0, alipay: AlipayKeys | None = None,
                wechat: bool = True, **sections: Any) -> dict[str, Any]:
    """A config dict (write it as TOML or validate it) for a posd that talks to ``sim_url``.

    WeChat is enabled unless ``wechat=False``; Alipay when its keys are given.
    """
    secret(tmp / "wechat-api-key", WECHAT.api_key)
    secret(tmp / "api-token", "test-token-0123456789abcdef")
    data: dict[str, Any] = {
        "store": {"id": "S001", "name": "测试店 Test Shop", "terminal_id": "T01"},
        "database": {"path": str(tmp / "posd.db")},
        "api": {"listen": f"127.0.0.1:{api_port}", "token_file": str(tmp / "api-token")},
        "channels": {"wechat": {
            "base_url": sim_url, "appid": WECHAT.appid, "mch_id": WECHAT.mch_id,
            "api_key_file": str(tmp / "wechat-api-key"), "sign_type": sign_type,
            "cert_file": str(pki.client_cert_file), "key_file": str(pki.client_key_file),
            "ca_file": str(pki.ca_cert_file), "connect_timeout_s": 1.0,
            "read_timeout_s": read_timeout_s,
        }},
        "scanner": {"kind": "none"},
        "printer": {"kind": "none"},
        # The daily job is off unless a test is about it: its downloads would take faults
        # other tests queue for their own requests.
        "reconcile": {"enabled": False},
    }
    if alipay is not None:
        data["channels"]["alipay"] = alipay_section(sim_url, alipay, pki,
                                                    read_timeout_s=read_timeout_s)
    if not wechat:
        del data["channels"]["wechat"]
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return data


def to_toml(data: dict[str, Any]) -> str:
    """Just enough TOML for make_config's dicts."""
    lines: list[str] = []

    def emit(prefix: str, table: dict[str, Any]) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        if prefix:
            lines.append(f"[{prefix}]")
        for key, value in scalars.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, (int, float)):
                lines.append(f"{key} = {value}")
            elif isinstance(value, (list, tuple)):
                items = (f'"{v}"' if isinstance(v, str) else str(v) for v in value)
                lines.append(f"{key} = [{', '.join(items)}]")
            else:
                lines.append(f'{key} = "{value}"')
        for key, value in table.items():
            if isinstance(value, dict):
                emit(f"{prefix}.{key}" if prefix else key, value)

    emit("", data)
    return "\n".join(lines) + "\n"


def config(data: dict[str, Any]) -> Config:
    return Config.model_validate(data)


def start_simulator(pki: TestPki, *, alipay: AlipayKeys | None = None,
                    **options: Any) -> Simulator:
    """The simulator over HTTPS; with ``alipay`` keys it also serves Alipay's gateway.do."""
    options.setdefault("min_reverse_delay_s", MIN_REVERSE)
    options.setdefault("confirm_delay_s", 0.6)
    sandbox = None if alipay is None else alipay.sandbox(ALIPAY_APP_ID)
    return Simulator(wechat=WECHAT, alipay=sandbox, tls=pki.server_tls(), **options).start()


#: A fixed moment for tests that move time by hand: 2025-06-15 23:06:40 Beijing time.
T0 = 1_750_000_000.0


class Clock:
    """Time moved by the test (``clock.now += 20``), for simulators and clients that take one."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

