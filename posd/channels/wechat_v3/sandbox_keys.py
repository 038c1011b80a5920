# SPDX-License-Identifier: MIT
"""Throw-away keys for the WeChat Pay v3 sandbox: the merchant's and the simulator's own.

v3's key model (reference/channels.md §1.11): the merchant signs requests with its API
certificate's key (``apiclient_key.pem``; the certificate's serial goes into every
``Authorization``); WeChat Pay signs answers with the WeChat Pay public key's private half
(named ``PUB_KEY_ID_…``) or with a platform certificate's key (named by its serial). So the
simulator verifies requests with the merchant's public key and signs with its own keys, and
posd is configured with the merchant key and WeChat Pay's public key or certificates. Private
keys are written 0600, as posd's own key files must be.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from posd.channels.alipay.sandbox_keys import new_key, private_pem, write_private
from posd.channels.wechat_v3.simulator import WechatV3Sandbox
from posd.core import wechat_v3_wire as wire

#: the public key id of the sandbox (WeChat's are PUB_KEY_ID_ + 32 digits or so)
PUBLIC_KEY_ID = "PUB_KEY_ID_0114232020241201000000000000000001"


@dataclass(frozen=True, slots=True)
class WechatV3Keys:
    """The files of a WeChat Pay v3 sandbox, and the names that go with them."""

    directory: Path
    #: posd's ``private_key_file`` and the serial of its certificate (``merchant_serial_no``)
    merchant_key_file: Path
    merchant_cert_file: Path
    merchant_serial_no: str
    #: public key mode: posd's ``wechatpay_public_key_file`` / ``_id``; the simulator's key
    public_key_file: Path
    public_key_id: str
    public_private_key_file: Path
    #: platform certificate mode: posd's ``platform_cert_files``; the simulator's key
    platform_cert_file: Path
    platform_private_key_file: Path
    platform_serial: str

    def sandbox(self, appid: str, mchid: str, *, mode: str = "public_key") -> WechatV3Sandbox:
        """The simulator's side. ``mode``: ``public_key`` (answers signed with the public
        key's private half when the request names it, else with the platform certificate's
        key if there is one), ``platform`` (platform certificate only), ``both`` (either,
        as WeChat does during a switch: by the request's Wechatpay-Serial)."""
        merchant = wire.load_certificate(self.merchant_cert_file.read_bytes()).public_key()
        assert isinstance(merchant, rsa.RSAPublicKey)
        signers: dict[str, rsa.RSAPrivateKey] = {}
        if mode in ("public_key", "both"):
            signers[self.public_key_id] = wire.load_private_key(
                self.public_private_key_file.read_bytes())
        if mode in ("platform", "both"):
            signers[self.platform_serial] = wire.load_private_key(
                self.platform_private_key_file.read_bytes())
        if not signers:
            raise ValueError(f"mode must be public_key, platform or both, got {mode!r}")
        return WechatV3Sandbox(appid, mchid, self.merchant_serial_no, merchant, signers)


def _certificate(key: rsa.RSAPrivateKey, common_name: str, *, days: int = 365,
                 start: datetime | None = None) -> x509.Certificate:
    now = start or datetime.now(UTC) - timedelta(days=1)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "posd sandbox")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + timedelta(days=days))
            .sign(key, hashes.SHA256()))


def write_platform_certificate(path: Path, key: rsa.RSAPrivateKey, *, days: int = 365,
                               start: datetime | None = None) -> str:
    """A platform certificate for ``key`` at ``path``; returns its serial (hex)."""
    cert = _certificate(key, "Tenpay.com Root CA sandbox", days=days, start=start)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return wire.serial_hex(cert)


def _files(directory: Path) -> dict[str, Path]:
    return {"merchant_key": directory / "apiclient_key.pem",
            "merchant_cert": directory / "apiclient_cert.pem",
            "public_key": directory / "pub_key.pem",
            "public_private": directory / "wechatpay-sim-public-private.pem",
            "platform_cert": directory / "wechatpay_platform.pem",
            "platform_private": directory / "wechatpay-sim-platform-private.pem"}


def keys_in(directory: Path) -> WechatV3Keys:
    """The sandbox written in ``directory`` before (its serials read off its certificates)."""
    f = _files(directory)
    merchant = wire.load_certificate(f["merchant_cert"].read_bytes())
    platform = wire.load_certificate(f["platform_cert"].read_bytes())
    return WechatV3Keys(directory, f["merchant_key"], f["merchant_cert"], wire.serial_hex(merchant),
                        f["public_key"], PUBLIC_KEY_ID, f["public_private"], f["platform_cert"],
                        f["platform_private"], wire.serial_hex(platform))


def make_wechat_v3_keys(directory: Path, *, reuse: bool = False) -> WechatV3Keys:
    """Write every key and certificate of a v3 sandbox into ``directory`` (kept as they
    are with ``reuse``: ``posd demo``)."""
    f = _files(directory)
    if reuse and all(p.exists() for p in f.values()):
        return keys_in(directory)
    directory.mkdir(parents=True, exist_ok=True)
    merchant, public, platform = new_key(), new_key(), new_key()
    write_private(f["merchant_key"], private_pem(merchant))
    merchant_cert = _certificate(merchant, f"posd sandbox merchant {secrets.token_hex(4)}")
    f["merchant_cert"].write_bytes(merchant_cert.public_bytes(serialization.Encoding.PEM))
    write_private(f["public_private"], private_pem(public))
    f["public_key"].write_bytes(public.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    write_private(f["platform_private"], private_pem(platform))
    write_platform_certificate(f["platform_cert"], platform)
    return keys_in(directory)
