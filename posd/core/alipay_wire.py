# SPDX-License-Identifier: MIT
"""Alipay OpenAPI (``gateway.do``) wire format: RSA2 keys, signing, signed JSON answers.

Pure functions (no I/O, no clock), shared by the client and the simulator; the facts are in
reference/channels.md §2.2-§2.4.

- Request signing (§2.3): every parameter except ``sign`` with a non-empty value (as the
  official Java SDK skips empty ones), sorted by name (ASCII), joined ``k=v&...`` with raw,
  unencoded values (``biz_content`` is the exact JSON text that is sent), then
  RSASSA-PKCS1-v1_5 with SHA-256 over the UTF-8 bytes, base64 without newlines. The
  string-to-sign holds the payment code: it is never logged.
- Answers (§2.4): ``{"<method>_response": {...}, "sign": "..."}``, in certificate mode with an
  ``alipay_cert_sn`` member, for gateway errors ``error_response`` and often no ``sign``. The
  signature covers the raw text of the response member *exactly as received*, from its ``{``
  to its matching ``}``. :func:`parse_answer` finds that text with a real JSON scanner (the
  standard library's own, one member at a time), so it never re-serialises (Alipay writes
  ``\\/`` and non-ASCII text as it likes) and never counts braces inside string values.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SIGN_TYPE: Final = "RSA2"  # SHA256withRSA; "RSA" (SHA-1) is legacy and refused
MIN_KEY_BITS: Final = 2048  # RSA2 keys are 2048-bit (Alipay's key tool makes nothing smaller)
MAX_BODY: Final = 64 * 1024  # a trade.pay answer is < 3 KiB; anything larger is garbage
ERROR_RESPONSE: Final = "error_response"

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


class WireError(ValueError):
    """Bytes that are not a usable key or a well-formed Alipay answer."""


# --- keys ---------------------------------------------------------------------------------


def _pem_or_der(data: bytes) -> tuple[bytes, bool]:
    """(bytes, is_pem). Alipay's key tool and console hand out bare base64 without PEM lines."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        return text, True
    try:
        return base64.b64decode(b"".join(text.split()), validate=True), False
    except (binascii.Error, ValueError) as err:
        raise WireError("not a key (neither PEM nor base64)") from err


def load_private_key(data: bytes) -> rsa.RSAPrivateKey:
    """An RSA private key: PEM PKCS#1 (``RSA PRIVATE KEY``) or PKCS#8, or bare base64 DER."""
    raw, pem = _pem_or_der(data)
    try:
        if pem:
            key = serialization.load_pem_private_key(raw, password=None)
        else:
            key = serialization.load_der_private_key(raw, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        # The message names the format problem only; the key material never appears in it.
        raise WireError("not an unencrypted RSA private key (PKCS#1 or PKCS#8)") from err
    if not isinstance(key, rsa.RSAPrivateKey):
        raise WireError("not an RSA private key")
    if key.key_size < MIN_KEY_BITS:
        raise WireError(f"a {key.key_size}-bit key; RSA2 needs {MIN_KEY_BITS} bits")
    return key


def load_public_key(data: bytes) -> rsa.RSAPublicKey:
    """An RSA public key: PEM (``PUBLIC KEY`` or ``RSA PUBLIC KEY``) or bare base64 DER."""
    raw, pem = _pem_or_der(data)
    try:
        if pem:
            key = serialization.load_pem_public_key(raw)
        else:
            key = serialization.load_der_public_key(raw)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise WireError("not an RSA public key") from err
    if not isinstance(key, rsa.RSAPublicKey):
        raise WireError("not an RSA public key")
    if key.key_size < MIN_KEY_BITS:
        raise WireError(f"a {key.key_size}-bit key; RSA2 needs {MIN_KEY_BITS} bits")
    return key


def public_pem(key: rsa.RSAPublicKey) -> bytes:
    """``-----BEGIN PUBLIC KEY-----`` (SubjectPublicKeyInfo), as Alipay's console shows it."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def same_key(a: rsa.RSAPublicKey, b: rsa.RSAPublicKey) -> bool:
    return a.public_numbers() == b.public_numbers()


# --- signing ------------------------------------------------------------------------------


def string_to_sign(params: Mapping[str, str]) -> str:
    """``k=v&...`` over every parameter but ``sign``, non-empty values, sorted by name."""
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v != "")


def sign_text(text: str, key: rsa.RSAPrivateKey) -> str:
    """base64(SHA256withRSA(UTF-8 ``text``)), one line."""
    signature = key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def sign(params: Mapping[str, str], key: rsa.RSAPrivateKey) -> str:
    """The request's ``sign`` (the ``sign`` parameter itself is skipped)."""
    return sign_text(string_to_sign(params), key)


def verify_text(text: str, signature: str, key: rsa.RSAPublicKey) -> bool:
    """Whether ``signature`` (base64) is ``key``'s SHA256withRSA signature of ``text``."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        key.verify(raw, text.encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def verify(params: Mapping[str, str], key: rsa.RSAPublicKey) -> bool:
    """Check a request's ``sign`` (the simulator's side); False when absent."""
    given = params.get("sign", "")
    return bool(given) and verify_text(string_to_sign(params), given, key)


# --- answers ------------------------------------------------------------------------------


def response_key(method: str) -> str:
    """``alipay.trade.pay`` -> ``alipay_trade_pay_response``."""
    return method.replace(".", "_") + "_response"


@dataclass(frozen=True, slots=True)
class Answer:
    """One gateway answer: which member held it, its raw text, its fields, its signature."""

    key: str  # "<method>_response" or "error_response"
    raw: str  # the member's value exactly as received: what ``sign`` covers
    fields: Mapping[str, object]
    sign: str | None  # None: the answer is unsigned
    #: certificate mode: the SN of the Alipay certificate whose key signed it ("" if absent)
    cert_sn: str = ""

    def text(self, name: str) -> str:
        """A string field, or "" when absent or not a string."""
        value = self.fields.get(name)
        return value if isinstance(value, str) else ""

    def verifies(self, key: rsa.RSAPublicKey) -> bool:
        """The signature over the raw text; failing that, over the raw text with ``\\/`` read
        as ``/``. Alipay's JSON writer escapes ``/`` while Alipay signs the unescaped text, and
        its own SDK verifies exactly so (alipay-sdk-java-all ``AlipaySignature
        .checkResponseSign``/``checkResponseCertSign``: a second check with ``\\/`` replaced).
        Only that one escape is undone: any other rewrite still fails."""
        if self.sign is None:
            return False
        if verify_text(self.raw, self.sign, key):
            return True
        return "\\/" in self.raw and verify_text(self.raw.replace("\\/", "/"), self.sign, key)


def _skip(text: str, pos: int) -> int:
    match = _WHITESPACE.match(text, pos)
    return match.end() if match else pos


def _expect(text: str, pos: int, char: str) -> int:
    if not text.startswith(char, pos):
        raise WireError(f"expected {char!r} at offset {pos}")
    return _skip(text, pos + 1)


def members(text: str) -> dict[str, tuple[object, str]]:
    """The top-level members of a JSON object: name -> (value, raw text of the value).

    Each value is scanned by ``json``'s own decoder from where it starts, which says where
    it ends: string contents (braces, ``\\/``, ``\\uXXXX``) cannot confuse it. Duplicate
    names are refused: which one would the signature cover?
    """
    found: dict[str, tuple[object, str]] = {}
    try:
        pos = _expect(text, _skip(text, 0), "{")
        while not text.startswith("}", pos):
            if found:
                pos = _expect(text, pos, ",")
            name, pos = _DECODER.raw_decode(text, pos)
            if not isinstance(name, str):
                raise WireError(f"member name at offset {pos} is not a string")
            start = _expect(text, _skip(text, pos), ":")
            value, end = _DECODER.raw_decode(text, start)
            if name in found:
                raise WireError(f"member {name!r} appears twice")
            found[name] = (value, text[start:end])
            pos = _skip(text, end)
    except (json.JSONDecodeError, RecursionError) as err:
        raise WireError(f"not JSON: {err}") from err
    if _skip(text, pos + 1) != len(text):
        raise WireError("data after the JSON object")
    return found


def parse_answer(body: bytes, method: str) -> Answer:
    """The answer to ``method`` in ``body``; WireError if it is not one."""
    if len(body) > MAX_BODY:
        raise WireError(f"body of {len(body)} bytes is too large")
    try:
        text = body.decode("utf-8")  # the request says charset=utf-8
    except UnicodeDecodeError as err:
        raise WireError("not UTF-8") from err
    top = members(text)
    keys = [k for k in (response_key(method), ERROR_RESPONSE) if k in top]
    if len(keys) != 1:
        raise WireError(f"expected one of {response_key(method)!r} or {ERROR_RESPONSE!r}")
    fields, raw = top[keys[0]]
    if not isinstance(fields, dict):
        raise WireError(f"{keys[0]!r} is not an object")
    signature = top.get("sign", (None, ""))[0]
    if signature is not None and not isinstance(signature, str):
        raise WireError("sign is not a string")
    cert_sn = top.get("alipay_cert_sn", ("", ""))[0]
    return Answer(keys[0], raw, fields, signature or None,
                  cert_sn if isinstance(cert_sn, str) else "")


def render_answer(key: str, fields: Mapping[str, object], signer: rsa.RSAPrivateKey | None,
                  *, cert_sn: str = "", sign_unescaped: bool = False) -> bytes:
    """An answer as Alipay writes one: compact JSON, non-ASCII as is, ``/`` as ``\\/``.

    Signed over the member's text exactly as written (unsigned when ``signer`` is None), or,
    with ``sign_unescaped``, over that text with ``\\/`` as ``/`` (what Alipay itself does
    when a value holds a ``/``: see :meth:`Answer.verifies`). Used by the simulator and by
    tests; the client never re-renders what it received.
    """
    raw = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).replace("/", "\\/")
    parts = [f"{json.dumps(key)}:{raw}"]
    if cert_sn:
        parts.append(f'"alipay_cert_sn":{json.dumps(cert_sn)}')
    if signer is not None:
        signed = raw.replace("\\/", "/") if sign_unescaped else raw
        parts.append(f'"sign":{json.dumps(sign_text(signed, signer))}')
    return ("{" + ",".join(parts) + "}").encode()
