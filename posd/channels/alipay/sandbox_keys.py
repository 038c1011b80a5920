# SPDX-License-Identifier: MIT
"""Throw-away RSA2 key pairs for the Alipay sandbox: the app's and the simulator's own.

Alipay's key model (reference/channels.md §2.3-§2.4): the merchant makes an *app* key pair,
signs requests with the app private key and uploads the app public key; Alipay signs answers
with its own key, whose public half (支付宝公钥) the merchant downloads. So the simulator
verifies requests with the app public key and signs with its own private key, and posd is
configured with the app private key and the simulator's public key. Private keys are
written mode 0600, as posd's own key files must be. Used by tests and by ``posd demo``,
which keeps the files between runs (``reuse=True``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from posd.core import alipay_wire as wire
from posd.channels.alipay.simulator import AlipaySandbox


@dataclass(frozen=True, slots=True)
class AlipayKeys:
    """The PEM files of an Alipay sandbox."""

    directory: Path
    #: posd's ``channels.alipay.app_private_key_file`` (PKCS#1, as Alipay's key tool writes)
    app_private_key_file: Path
    #: what a merchant uploads to Alipay; the simulator verifies requests with it
    app_public_key_file: Path
    #: the simulator's signing key (PKCS#8)
    alipay_private_key_file: Path
    #: posd's ``channels.alipay.alipay_public_key_file``
    alipay_public_key_file: Path

    @classmethod
    def in_directory(cls, directory: Path) -> AlipayKeys:
        return cls(
            directory,
            directory / "alipay-app-private-key.pem",
            directory / "alipay-app-public-key.pem",
            directory / "alipay-sim-private-key.pem",
            directory / "alipay-public-key.pem",
        )

    def files(self) -> tuple[Path, ...]:
        return (self.app_private_key_file, self.app_public_key_file,
                self.alipay_private_key_file, self.alipay_public_key_file)

    def sandbox(self, app_id: str) -> AlipaySandbox:
        """The simulator's side: the app public key and the simulator's private key."""
        return AlipaySandbox(
            app_id,
            wire.load_public_key(self.app_public_key_file.read_bytes()),
            wire.load_private_key(self.alipay_private_key_file.read_bytes()),
        )


def new_key() -> rsa.RSAPrivateKey:
    """A fresh RSA-2048 key (what Alipay's key tool makes for RSA2)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey, *, pkcs1: bool = False) -> bytes:
    """``RSA PRIVATE KEY`` (PKCS#1) or ``PRIVATE KEY`` (PKCS#8), unencrypted."""
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if pkcs1 else serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def write_private(path: Path, pem: bytes) -> None:
    """Create the file 0600 before writing a byte of the key."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    path.chmod(0o600)


def make_alipay_keys(directory: Path, *, reuse: bool = False) -> AlipayKeys:
    """Write both key pairs into ``directory`` (kept as they are with ``reuse``)."""
    keys = AlipayKeys.in_directory(directory)
    if reuse and all(f.exists() for f in keys.files()):
        return keys
    directory.mkdir(parents=True, exist_ok=True)
    app, alipay = new_key(), new_key()
    write_private(keys.app_private_key_file, private_pem(app, pkcs1=True))
    keys.app_public_key_file.write_bytes(wire.public_pem(app.public_key()))
    write_private(keys.alipay_private_key_file, private_pem(alipay))
    keys.alipay_public_key_file.write_bytes(wire.public_pem(alipay.public_key()))
    return keys
