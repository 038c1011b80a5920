# SPDX-License-Identifier: MIT
"""Alipay's public-key certificate mode (公钥证书模式): certificate serial numbers (SNs) and
the chain check. [core]

Pure: PEM bytes in, values out. The SN algorithm is the official SDKs' (alipay-sdk-java-all
``AlipaySignature.getCertSN`` / ``getRootCertSN``; alipay-sdk-nodejs-all
``lib/antcertutil.ts``): ``md5_hex(issuer attributes in reverse order, each "k=v", joined by
"," + the serial number in decimal)``. The root SN joins with ``_`` the SNs of the root
bundle's RSA-signed certificates only (signature algorithm OIDs 1.2.840.113549.1.1.*; the
SM2-signed one in Alipay's bundle is skipped). Requests carry ``app_cert_sn`` and
``alipay_root_cert_sn`` among the signed parameters; answers carry ``alipay_cert_sn``, the SN
of the certificate whose key signed them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import rsa

from posd.core.errors import InputError

#: RSA signature algorithms (PKCS #1): the only ones the root SN counts.
RSA_SIGNATURES = "1.2.840.113549.1.1."
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.DOTALL)


class CertError(InputError):
    """A certificate or bundle that cannot be used: say which and why."""


def load_certs(data: bytes, what: str) -> list[x509.Certificate]:
    """Every certificate of a PEM file (a bundle holds several). CertError if none."""
    blocks = _PEM.findall(data)
    if not blocks:
        raise CertError(f"{what}: no PEM certificate in it")
    try:
        return [x509.load_pem_x509_certificate(block) for block in blocks]
    except ValueError as err:
        raise CertError(f"{what}: not a certificate: {err}") from None


def sn(cert: x509.Certificate) -> str:
    """The certificate's SN as Alipay computes it (module docstring)."""
    issuer = ",".join(f"{a.rfc4514_attribute_name}={a.value!s}"
                      for rdn in reversed(cert.issuer.rdns) for a in rdn)
    return hashlib.md5((issuer + str(cert.serial_number)).encode(),
                       usedforsecurity=False).hexdigest()


def root_sn(bundle: list[x509.Certificate]) -> str:
    """``alipay_root_cert_sn``: the RSA-signed certificates' SNs joined by ``_``."""
    found = [sn(c) for c in bundle if c.signature_algorithm_oid.dotted_string.startswith(
        RSA_SIGNATURES)]
    if not found:
        raise CertError("alipay_root_cert_file: no RSA-signed certificate in the bundle")
    return "_".join(found)


@dataclass(frozen=True, slots=True)
class CertMode:
    """What certificate mode needs at run time: the SNs to send, the key that verifies
    Alipay's answers, and the SN that key's certificate has."""

    app_cert_sn: str
    alipay_root_cert_sn: str
    alipay_cert_sn: str
    alipay_public_key: rsa.RSAPublicKey
    alipay_cert_not_after: datetime
    #: the root bundle: a rotated Alipay certificate is trusted only if issued under it
    roots: tuple[x509.Certificate, ...] = ()


def issued_under(cert: x509.Certificate, roots: list[x509.Certificate],
                 intermediates: Sequence[x509.Certificate] = ()) -> bool:
    """Whether ``cert`` is signed by a root of the bundle, or by an intermediate (sent with
    it) that a root signed: Alipay's certificates are issued under its root."""
    if any(_signed_by(cert, root) for root in roots):
        return True
    return any(_signed_by(cert, mid) and any(_signed_by(mid, root) for root in roots)
               for mid in intermediates)


def cert_mode(app_cert: bytes, alipay_cert: bytes, root_bundle: bytes,
              now: datetime) -> CertMode:
    """Check the three files and make a :class:`CertMode`. CertError naming the file."""
    app = load_certs(app_cert, "app_cert_file")[0]
    alipay_chain = load_certs(alipay_cert, "alipay_cert_file")
    roots = load_certs(root_bundle, "alipay_root_cert_file")
    alipay = alipay_chain[0]
    key = alipay.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise CertError("alipay_cert_file: not an RSA certificate (RSA2 mode needs one)")
    if not issued_under(alipay, roots, alipay_chain[1:]):
        raise CertError("alipay_cert_file: not issued under alipay_root_cert_file (download "
                        "both again from the Alipay console)")
    if not alipay.not_valid_before_utc <= now <= alipay.not_valid_after_utc:
        raise CertError(f"alipay_cert_file: not valid now (valid "
                        f"{alipay.not_valid_before_utc:%Y-%m-%d} to "
                        f"{alipay.not_valid_after_utc:%Y-%m-%d})")
    return CertMode(sn(app), root_sn(roots), sn(alipay), key, alipay.not_valid_after_utc,
                    tuple(roots))


def rotated(mode: CertMode, pem: bytes, wanted_sn: str, now: datetime) -> CertMode:
    """``mode`` with Alipay's new certificate (``pem``, downloaded for ``wanted_sn``), once
    it is an RSA certificate with that SN, valid now and issued under the root bundle.
    CertError otherwise: a certificate posd cannot tie to Alipay's root is never used."""
    chain = load_certs(pem, "the downloaded Alipay certificate")
    cert = chain[0]
    key = cert.public_key()
    if sn(cert) != wanted_sn:
        raise CertError(f"the downloaded Alipay certificate has SN {sn(cert)}, not {wanted_sn}")
    if not isinstance(key, rsa.RSAPublicKey):
        raise CertError("the downloaded Alipay certificate is not RSA")
    if not issued_under(cert, list(mode.roots), chain[1:]):
        raise CertError("the downloaded Alipay certificate is not issued under "
                        "alipay_root_cert_file")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise CertError("the downloaded Alipay certificate is not valid now")
    return CertMode(mode.app_cert_sn, mode.alipay_root_cert_sn, wanted_sn, key,
                    cert.not_valid_after_utc, mode.roots)


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False
