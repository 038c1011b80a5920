# SPDX-License-Identifier: MIT
"""Alipay's public-key certificate mode (公钥证书模式; DESIGN §12, issue 15): certificate SNs
against python-alipay-sdk's certificate-mode client (an independent reference), with
certificates made here (a root, Alipay's certificate, the app's, a rotated one, one not
signed by the root, an ECDSA-signed root the SN skips); a sale and a reversal through the
simulator in certificate mode; Alipay rotating its certificate: posd downloads the new one and
uses it only when it is issued under the root."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from posd.channels.alipay.client import Alipay
from posd.channels.alipay.config import AlipayConfig
from posd.channels.alipay.simulator import SandboxCerts
from posd.channels.simulator import AlipayKeys, Simulator, TestPki
from posd.core import alipay_certs
from posd.core import alipay_wire as wire
from posd.core.errors import ConfigError
from posd.core.money import Fen
from posd.core.sale import Closed, Paid, Unknown
from tests.sandbox import ALIPAY_APP_ID, WECHAT, alipay_section

NOW = datetime.now(UTC)


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ant Financial"),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME,
                                         "Certification Authority"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def certificate(subject: str, key: object, issuer: str, issuer_key: object,
                serial: int, *, ca: bool = False) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
               .public_key(key).serial_number(serial)  # type: ignore[arg-type]
               .not_valid_before(NOW - timedelta(days=1))
               .not_valid_after(NOW + timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    return builder.sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]


def pem(*certs: x509.Certificate) -> bytes:
    return b"\n".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@dataclasses.dataclass
class Certs:
    app: Path
    alipay: Path
    root: Path
    rotated: x509.Certificate
    stranger: Path


@pytest.fixture(name="certs")
def _certs(tmp_path: Path, alipay_keys: AlipayKeys) -> Certs:
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    root = certificate("Ant Financial Certification Authority R1", root_key.public_key(),
                       "Ant Financial Certification Authority R1", root_key, 0x6E3D0D0C, ca=True)
    ec_root = certificate("Ant Financial Certification Authority E1", ec_key.public_key(),
                          "Ant Financial Certification Authority E1", ec_key, 0x4B1D, ca=True)
    alipay_public = wire.load_private_key(
        alipay_keys.alipay_private_key_file.read_bytes()).public_key()
    app_public = wire.load_public_key(alipay_keys.app_public_key_file.read_bytes())
    issuer = "Ant Financial Certification Authority R1"
    alipay = certificate("支付宝(中国)网络技术有限公司", alipay_public, issuer, root_key, 2021_0001)
    rotated = certificate("支付宝(中国)网络技术有限公司", alipay_public, issuer, root_key, 2022_0002)
    app = certificate(ALIPAY_APP_ID, app_public, issuer, root_key, 2021_0042)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = certificate("支付宝(中国)网络技术有限公司", alipay_public, issuer, other_key, 7)
    paths = {}
    for label, data in (("app", pem(app)), ("alipay", pem(alipay)),
                        ("root", pem(root, ec_root)), ("stranger", pem(stranger))):
        paths[label] = tmp_path / f"{label}.crt"
        paths[label].write_bytes(data)
    return Certs(paths["app"], paths["alipay"], paths["root"], rotated, paths["stranger"])


def test_sns_agree_with_python_alipay_sdk(certs: Certs) -> None:
    from alipay import DCAliPay

    for path in (certs.app, certs.alipay):
        cert = alipay_certs.load_certs(path.read_bytes(), "x")[0]
        assert alipay_certs.sn(cert) == DCAliPay.get_cert_sn(path.read_text())
    bundle = alipay_certs.load_certs(certs.root.read_bytes(), "root")
    ours = alipay_certs.root_sn(bundle)
    assert ours == DCAliPay.get_root_cert_sn(certs.root.read_text().replace(
        "-----\n-----BEGIN", "-----\n\n-----BEGIN"))  # the SDK splits on blank lines
    assert "_" not in ours  # the ECDSA-signed root is not counted


def section(sim: Simulator, pki: TestPki, keys: AlipayKeys, certs: Certs,
            alipay_cert: Path | None = None) -> AlipayConfig:
    data = alipay_section(sim.url, keys, pki)
    del data["alipay_public_key_file"]
    return AlipayConfig.model_validate(data | {
        "app_cert_file": str(certs.app), "alipay_cert_file": str(alipay_cert or certs.alipay),
        "alipay_root_cert_file": str(certs.root)})


@pytest.fixture(name="sim")
def _sim(pki: TestPki, alipay_keys: AlipayKeys, certs: Certs) -> Iterator[Simulator]:
    mode = alipay_certs.cert_mode(certs.app.read_bytes(), certs.alipay.read_bytes(),
                                  certs.root.read_bytes(), NOW)
    sandbox = dataclasses.replace(alipay_keys.sandbox(ALIPAY_APP_ID), certs=SandboxCerts(
        mode.app_cert_sn, mode.alipay_root_cert_sn, mode.alipay_cert_sn))
    with Simulator(wechat=WECHAT, alipay=sandbox, tls=pki.server_tls(),
                   min_reverse_delay_s=0.0, confirm_delay_s=0.5) as simulator:
        yield simulator


def test_a_sale_and_a_reversal_in_certificate_mode(sim: Simulator, pki: TestPki,
                                                   alipay_keys: AlipayKeys,
                                                   certs: Certs) -> None:
    client = Alipay.from_config(section(sim, pki, alipay_keys, certs))
    try:
        assert isinstance(client.pay("S001T01261202000000000021", Fen(1250),
                                     "281234567890120000", "x"), Paid)
        client.pay("S001T01261202000000000022", Fen(800), "281234567890120002", "x")
        assert isinstance(client.reverse("S001T01261202000000000022"), Closed)
    finally:
        client.close()


def rotating_sim(pki: TestPki, keys: AlipayKeys, certs: Certs,
                 served: x509.Certificate) -> Simulator:
    """A simulator whose answers name ``served`` (Alipay rotated to it) and that serves it
    through alipaycert.download."""
    mode = alipay_certs.cert_mode(certs.app.read_bytes(), certs.alipay.read_bytes(),
                                  certs.root.read_bytes(), NOW)
    sandbox = dataclasses.replace(keys.sandbox(ALIPAY_APP_ID), certs=SandboxCerts(
        mode.app_cert_sn, mode.alipay_root_cert_sn, alipay_certs.sn(served), pem(served)))
    return Simulator(wechat=WECHAT, alipay=sandbox, tls=pki.server_tls(),
                     min_reverse_delay_s=0.0, confirm_delay_s=0.5).start()


def test_alipay_rotates_its_certificate_posd_downloads_and_checks_it(
        pki: TestPki, alipay_keys: AlipayKeys, certs: Certs) -> None:
    sim = rotating_sim(pki, alipay_keys, certs, certs.rotated)
    client = Alipay.from_config(section(sim, pki, alipay_keys, certs))  # holds the old one
    try:
        assert isinstance(client.pay("S001T01261202000000000023", Fen(100),
                                     "281234567890120000", "x"), Paid)
        assert client._certs is not None
        assert client._certs.alipay_cert_sn == alipay_certs.sn(certs.rotated)
        assert isinstance(client.query("S001T01261202000000000023", Fen(100)), Paid)
    finally:
        client.close()
        sim.stop()


def test_a_rotated_certificate_not_under_the_root_is_never_trusted(
        pki: TestPki, alipay_keys: AlipayKeys, certs: Certs) -> None:
    """The new certificate is not issued under the root: posd does not decide on an answer
    it cannot tie to Alipay's root; the sale stays unknown, never declined."""
    stranger = alipay_certs.load_certs(certs.stranger.read_bytes(), "stranger")[0]
    sim = rotating_sim(pki, alipay_keys, certs, stranger)
    client = Alipay.from_config(section(sim, pki, alipay_keys, certs))
    try:
        answer = client.pay("S001T01261202000000000024", Fen(100), "281234567890120000", "x")
        assert isinstance(answer, Unknown) and answer.may_have_arrived
        assert "not issued under alipay_root_cert_file" in answer.detail
    finally:
        client.close()
        sim.stop()


def test_certificates_that_do_not_hold_are_refused_at_start(
        sim: Simulator, pki: TestPki, alipay_keys: AlipayKeys, certs: Certs) -> None:
    with pytest.raises(ConfigError, match="alipay_cert_file: not issued under"):
        Alipay.from_config(section(sim, pki, alipay_keys, certs, alipay_cert=certs.stranger))
    data = alipay_section(sim.url, alipay_keys, pki)
    with pytest.raises(ValueError, match="set one, not both"):
        AlipayConfig.model_validate(data | {"app_cert_file": str(certs.app),
                                            "alipay_cert_file": str(certs.alipay),
                                            "alipay_root_cert_file": str(certs.root)})
    del data["alipay_public_key_file"]
    with pytest.raises(ValueError, match="missing: alipay_root_cert_file"):
        AlipayConfig.model_validate(data | {"app_cert_file": str(certs.app),
                                            "alipay_cert_file": str(certs.alipay)})


def test_doctor_shows_the_sns_and_passes(sim: Simulator, pki: TestPki,
                                         alipay_keys: AlipayKeys, certs: Certs) -> None:
    from posd.channels.alipay import doctor
    from posd.channels.spec import Till

    rows = {c.name: c for c in doctor.checks(section(sim, pki, alipay_keys, certs),
                                             Till("S001", "T01", "shop"))}
    assert rows["alipay"].result.value == "ok", rows["alipay"]
    setup = rows["alipay set-up"]
    assert setup.result.value == "ok" and "certificate mode: app_cert_sn" in setup.detail
    app = alipay_certs.load_certs(certs.app.read_bytes(), "app")[0]
    assert alipay_certs.sn(app) in setup.detail
