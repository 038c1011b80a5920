# SPDX-License-Identifier: MIT
"""WeChat Pay API v3 wire format: the ``WECHATPAY2-SHA256-RSA2048`` signatures both ways.

Pure functions (no I/O, no clock: the timestamp and nonce are passed in), shared by the
client and the simulator; the facts are in reference/channels.md §1.11 and WeChat's
"签名生成" / "签名验证" pages, as wechatpayv3's ``utils.build_authorization`` and
``utils.rsa_verify`` implement them (tests/shell/test_wechat_v3_sign.py checks both ways):

- A request is signed over ``METHOD\\nURL\\nTIMESTAMP\\nNONCE\\nBODY\\n``: URL is the path
  with its query string (``/v3/pay/transactions/out-trade-no/X?mchid=1``), BODY the exact
  bytes sent (empty for a GET). RSASSA-PKCS1-v1_5 with SHA-256 and the merchant's API
  certificate key, base64. The header is ``Authorization: WECHATPAY2-SHA256-RSA2048
  mchid="…",nonce_str="…",signature="…",timestamp="…",serial_no="…"`` (serial_no: the
  merchant API certificate's serial, upper-case hex).
- An answer is signed over ``TIMESTAMP\\nNONCE\\nBODY\\n`` from its ``Wechatpay-Timestamp``,
  ``Wechatpay-Nonce`` and raw body, the signature in ``Wechatpay-Signature``, made with the
  key named by ``Wechatpay-Serial``: a WeChat Pay public key's id (``PUB_KEY_ID_…``) or a
  platform certificate's serial (hex). During WeChat's switch from platform certificates to
  the public key both occur, so the verifier holds every key it was given, by name.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SCHEMA: Final = "WECHATPAY2-SHA256-RSA2048"
#: a v3 answer (JSON) is a few KiB; a bill's download is bounded apart
MAX_BODY: Final = 64 * 1024
MIN_KEY_BITS: Final = 2048
PUBLIC_KEY_PREFIX: Final = "PUB_KEY_ID_"

_PARAM = re.compile(r'\s*([a-z_]+)="([^"]*)"\s*(?:,|$)')
_AUTH_FIELDS: Final = ("mchid", "nonce_str", "signature", "timestamp", "serial_no")


class WireError(ValueError):
    """Bytes that are not a usable key or certificate, or a malformed header."""


# --- keys -----------------------------------------------------------------------------------


def load_private_key(data: bytes) -> rsa.RSAPrivateKey:
    """``apiclient_key.pem`` (PKCS#8 as WeChat's tool writes it; PKCS#1 accepted)."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        raise WireError(f"not an unencrypted PEM private key ({err})") from err
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < MIN_KEY_BITS:
        raise WireError(f"not an RSA key of at least {MIN_KEY_BITS} bits")
    return key


def load_public_key(data: bytes) -> rsa.RSAPublicKey:
    """The WeChat Pay public key file (``pub_key.pem``, ``PUBLIC KEY``)."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as err:
        raise WireError(f"not a PEM public key ({err})") from err
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_KEY_BITS:
        raise WireError(f"not an RSA key of at least {MIN_KEY_BITS} bits")
    return key


def load_certificate(data: bytes) -> x509.Certificate:
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError as err:
        raise WireError(f"not a PEM certificate ({err})") from err
    if not isinstance(cert.public_key(), rsa.RSAPublicKey):
        raise WireError("not an RSA certificate")
    return cert


def serial_hex(cert: x509.Certificate) -> str:
    """A certificate's serial as WeChat writes it (``Wechatpay-Serial``, ``serial_no``):
    upper-case hex without leading zeros."""
    return f"{cert.serial_number:X}"


def same_serial(a: str, b: str) -> bool:
    """Whether two hex serials name the same certificate (case and leading zeros aside,
    as wechatpayv3 compares ``int(serial, 16)``)."""
    try:
        return int(a, 16) == int(b, 16)
    except ValueError:
        return False


# --- signing --------------------------------------------------------------------------------


def request_message(method: str, url: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    return f"{method}\n{url}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"


def answer_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    return f"{timestamp}\n{nonce}\n".encode() + body + b"\n"


def sign(message: bytes, key: rsa.RSAPrivateKey) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def verify(message: bytes, signature: str, key: rsa.RSAPublicKey) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def authorization(*, mchid: str, serial_no: str, nonce: str, timestamp: str,
                  signature: str) -> str:
    """The ``Authorization`` header value, in wechatpayv3's order."""
    return (f'{SCHEMA} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
            f'timestamp="{timestamp}",serial_no="{serial_no}"')


def parse_authorization(header: str) -> dict[str, str]:
    """The five fields of an ``Authorization`` header (the simulator's side).
    WireError when the schema or a field is missing or a field is given twice."""
    schema, _, rest = header.strip().partition(" ")
    if schema != SCHEMA:
        raise WireError(f"not {SCHEMA}")
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        match = _PARAM.match(rest, pos)
        if match is None or match.end() == pos:
            raise WireError("malformed Authorization parameters")
        name, value = match.groups()
        if name in fields:
            raise WireError(f"{name} given twice")
        fields[name] = value
        pos = match.end()
    if missing := [f for f in _AUTH_FIELDS if not fields.get(f)]:
        raise WireError(f"Authorization without {', '.join(missing)}")
    return fields


@dataclass(frozen=True, slots=True)
class AnswerSignature:
    """The four ``Wechatpay-*`` headers of an answer."""

    timestamp: str
    nonce: str
    signature: str
    serial: str

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> AnswerSignature | None:
        """From response headers (looked up without regard to case); None if any is missing."""
        lower = {k.lower(): v for k, v in headers.items()}
        values = [lower.get(f"wechatpay-{name}", "") for name in
                  ("timestamp", "nonce", "signature", "serial")]
        return cls(*values) if all(values) else None

    def headers(self) -> dict[str, str]:
        return {"Wechatpay-Timestamp": self.timestamp, "Wechatpay-Nonce": self.nonce,
                "Wechatpay-Signature": self.signature, "Wechatpay-Serial": self.serial,
                "Wechatpay-Signature-Type": SCHEMA}


def sign_answer(body: bytes, key: rsa.RSAPrivateKey, serial: str, *, timestamp: str,
                nonce: str) -> AnswerSignature:
    return AnswerSignature(timestamp, nonce, sign(answer_message(timestamp, nonce, body), key),
                           serial)


class Verifier:
    """The keys WeChat Pay answers with, by the name ``Wechatpay-Serial`` gives: the public
    key's ``PUB_KEY_ID_…`` and each platform certificate's serial."""

    def __init__(self, public_key: tuple[str, rsa.RSAPublicKey] | None = None,
                 certificates: Mapping[str, rsa.RSAPublicKey] | None = None) -> None:
        self._public_key = public_key
        self._certificates = dict(certificates or {})
        if public_key is None and not self._certificates:
            raise WireError("no WeChat Pay public key and no platform certificate")

    @property
    def names(self) -> tuple[str, ...]:
        own = (self._public_key[0],) if self._public_key is not None else ()
        return own + tuple(self._certificates)

    def key(self, serial: str) -> rsa.RSAPublicKey | None:
        if serial.startswith(PUBLIC_KEY_PREFIX):
            if self._public_key is not None and self._public_key[0] == serial:
                return self._public_key[1]
            return None
        return next((k for name, k in self._certificates.items() if same_serial(name, serial)),
                    None)

    def problem(self, signed: AnswerSignature | None, body: bytes) -> str | None:
        """Why an answer cannot be trusted, or None when its signature verifies."""
        if signed is None:
            return "the answer is not signed (no Wechatpay-Signature headers)"
        key = self.key(signed.serial)
        if key is None:
            return (f"the answer is signed with {signed.serial!r}, which posd does not hold "
                    f"(it holds {', '.join(self.names)})")
        if not verify(answer_message(signed.timestamp, signed.nonce, body), signed.signature,
                      key):
            return "the answer's signature does not verify"
        return None
