# SPDX-License-Identifier: MIT
"""A throw-away PKI for the simulator's HTTPS: a CA, a server certificate, a merchant certificate.

WeChat's ``/secapi/`` paths want the merchant's API certificate (``apiclient_cert.pem`` +
``apiclient_key.pem``, RSA 2048) on the TLS connection (reference/channels.md §1.1). The test
PKI mirrors that: the CA signs the simulator's certificate (for 127.0.0.1 and localhost, so
posd can verify it with ``ca_file``) and a client certificate under WeChat's file names.
Private keys are written mode 0600, as posd's own key files must be. Used by tests and by
``posd demo``, which keeps the files between runs (``reuse=True``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from posd.channels.simulator.transport import ServerTls

_VALIDITY = dt.timedelta(days=3650)


@dataclass(frozen=True, slots=True)
class TestPki:
    """The PEM files of a test PKI."""

    __test__ = False  # not a pytest test class, despite the name

    directory: Path
    ca_cert_file: Path
    server_cert_file: Path
    server_key_file: Path
    client_cert_file: Path
    client_key_file: Path

    @classmethod
    def in_directory(cls, directory: Path) -> TestPki:
        return cls(
            directory,
            directory / "ca.pem",
            directory / "server_cert.pem",
            directory / "server_key.pem",
            directory / "apiclient_cert.pem",
            directory / "apiclient_key.pem",
        )

    def files(self) -> tuple[Path, ...]:
        return (
            self.ca_cert_file,
            self.server_cert_file,
            self.server_key_file,
            self.client_cert_file,
            self.client_key_file,
        )

    def server_tls(self, *, require_client_cert_on_secapi: bool = True) -> ServerTls:
        """The simulator's HTTPS settings: this server certificate, client certs from this CA."""
        return ServerTls(
            self.server_cert_file,
            self.server_key_file,
            self.ca_cert_file,
            require_client_cert_on_secapi,
        )


def make_test_pki(directory: Path | str, *, reuse: bool = False) -> TestPki:
    """Write a CA, a server certificate and a merchant client certificate under ``directory``.

    With ``reuse`` the files already there are kept when all of them exist.
    """
    pki = TestPki.in_directory(Path(directory))
    pki.directory.mkdir(parents=True, exist_ok=True)
    if reuse and all(path.exists() for path in pki.files()):
        return pki
    now = dt.datetime.now(dt.UTC)
    ca_key = _new_key()
    ca = _ca_certificate(ca_key, now)
    server_key, client_key = _new_key(), _new_key()
    server = _leaf(ca, ca_key, server_key, now, "posd simulator", server=True)
    client = _leaf(ca, ca_key, client_key, now, "posd sandbox merchant", server=False)
    _write_cert(pki.ca_cert_file, ca)
    _write_cert(pki.server_cert_file, server)
    _write_key(pki.server_key_file, server_key)
    _write_cert(pki.client_cert_file, client)
    _write_key(pki.client_key_file, client_key)
    return pki


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "posd sandbox"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: str, issuer: x509.Name, key: rsa.RSAPrivateKey, now: dt.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _ca_certificate(key: rsa.RSAPrivateKey, now: dt.datetime) -> x509.Certificate:
    name = "posd sandbox test CA"
    builder = (
        _builder(name, _name(name), key, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    return builder.sign(key, hashes.SHA256())


def _leaf(
    ca: x509.Certificate,
    ca_key: rsa.RSAPrivateKey,
    key: rsa.RSAPrivateKey,
    now: dt.datetime,
    subject: str,
    *,
    server: bool,
) -> x509.Certificate:
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(subject, ca.subject, key, now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256())


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    """PKCS#8 PEM, created 0600 (never world-readable, not even for a moment)."""
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    path.chmod(0o600)  # an existing file keeps its old mode through O_CREAT
