# SPDX-License-Identifier: MIT
"""WeChat Pay v2 wire format: signing and XML. Pure functions, shared by client and simulator.

Signature rules (reference/channels.md §1.2): every field except ``sign`` with a non-empty
value, sorted by name (ASCII), joined ``k=v&...`` with raw UTF-8 values, then ``&key=API_KEY``;
MD5 or HMAC-SHA256 (keyed with the API key), upper-case hex. The string-to-sign contains the
key: it is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from xml.etree.ElementTree import Element, SubElement, tostring

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

SIGN_TYPES = ("MD5", "HMAC-SHA256")
MAX_BODY = 64 * 1024  # a micropay answer is < 2 KiB; anything larger is garbage


class WireError(ValueError):
    """The bytes are not a WeChat v2 XML document."""


def _string_to_sign(params: Mapping[str, str], key: str) -> bytes:
    items = sorted((k, v) for k, v in params.items() if k != "sign" and v != "")
    return ("&".join(f"{k}={v}" for k, v in items) + f"&key={key}").encode()


def sign(params: Mapping[str, str], key: str, sign_type: str = "MD5") -> str:
    """The v2 signature of ``params`` (``sign`` itself and empty values are skipped)."""
    data = _string_to_sign(params, key)
    if sign_type == "MD5":
        return hashlib.md5(data).hexdigest().upper()  # noqa: S324 - the protocol's algorithm
    if sign_type == "HMAC-SHA256":
        return hmac.new(key.encode(), data, hashlib.sha256).hexdigest().upper()
    raise ValueError(f"unknown sign_type {sign_type!r}")


def verify(params: Mapping[str, str], key: str, sign_type: str) -> bool:
    """Constant-time check of ``params['sign']``; False when absent."""
    given = params.get("sign", "")
    if not given:
        return False
    return hmac.compare_digest(given.upper().encode(), sign(params, key, sign_type).encode())


def to_xml(params: Mapping[str, str]) -> bytes:
    root = Element("xml")
    for k, v in params.items():
        SubElement(root, k).text = v
    return bytes(tostring(root, encoding="utf-8", xml_declaration=False))


def from_xml(body: bytes) -> dict[str, str]:
    """Parse ``<xml><k>v</k>...</xml>`` with defusedxml (no entities, no DTDs)."""
    if len(body) > MAX_BODY:
        raise WireError(f"body of {len(body)} bytes is too large")
    try:
        root = SafeET.fromstring(body)
    except DefusedXmlException as err:
        raise WireError(f"forbidden XML construct: {type(err).__name__}") from err
    except SafeET.ParseError as err:
        raise WireError(f"not XML: {err}") from err
    except (ValueError, LookupError) as err:
        # expat refuses some declared encodings this way ("gbk": multi-byte, "nope": unknown).
        raise WireError(f"unreadable XML: {err}") from err
    if root.tag != "xml":
        raise WireError(f"root element is <{root.tag}>, not <xml>")
    fields: dict[str, str] = {}
    for child in root:
        if len(child):
            raise WireError(f"<{child.tag}> is not a flat field")
        fields[child.tag] = child.text or ""
    return fields
