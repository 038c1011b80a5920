# SPDX-License-Identifier: MIT
"""WeChat v2 signing and XML: official vectors, wechatpy as an independent oracle, hostile XML."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wechatpy.pay.utils import calculate_signature, calculate_signature_hmac

from posd.core import wechat_wire as wire

KEY = "192006250b4c09247ec02edce69f6a2d"
OFFICIAL = {
    "appid": "wxd930ea5d5a258f4f",
    "mch_id": "10000100",
    "device_info": "1000",
    "body": "test",
    "nonce_str": "ibuaiVcKdpRxkhJA",
}


@pytest.mark.parametrize(
    ("extra", "sign_type", "expected"),
    [
        ({}, "MD5", "9A0A8659F005D6984697E2CA0A9CF3B7"),
        ({}, "HMAC-SHA256", "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"),
        (
            {"sign_type": "HMAC-SHA256"},
            "HMAC-SHA256",
            "2C9DF1156522C0B2B03B4DBF3BCA5CACB602CBD5CA0F9E112458CF3E9855303B",
        ),
        ({"sign_type": "MD5"}, "MD5", "6B4978B16793D0C2604CD59C47425A27"),
        ({"detail": ""}, "MD5", "9A0A8659F005D6984697E2CA0A9CF3B7"),  # empty values skipped
        ({"sign": "ANYTHING"}, "MD5", "9A0A8659F005D6984697E2CA0A9CF3B7"),  # sign itself skipped
    ],
)
def test_official_vectors(extra: dict[str, str], sign_type: str, expected: str) -> None:
    params = OFFICIAL | extra
    assert wire.sign(params, KEY, sign_type) == expected
    assert wire.verify(params | {"sign": expected}, KEY, sign_type)


def test_verify_refuses_missing_wrong_and_other_algorithm() -> None:
    good = wire.sign(OFFICIAL, KEY, "MD5")
    assert not wire.verify(OFFICIAL, KEY, "MD5")
    assert not wire.verify(OFFICIAL | {"sign": ""}, KEY, "MD5")
    assert not wire.verify(OFFICIAL | {"sign": good[:-1] + "0"}, KEY, "MD5")
    assert not wire.verify(OFFICIAL | {"sign": good}, KEY, "HMAC-SHA256")
    assert not wire.verify(OFFICIAL | {"sign": good}, "another-key", "MD5")
    assert not wire.verify(OFFICIAL | {"sign": good, "new_field": "x"}, KEY, "MD5")


def test_unknown_sign_type_is_an_error() -> None:
    with pytest.raises(ValueError, match="sign_type"):
        wire.sign(OFFICIAL, KEY, "SHA1")


# Field names as WeChat writes them; values any text that can travel in XML and UTF-8.
NAMES = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).filter(
    lambda n: n != "sign"
)
VALUES = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"),
    max_size=40,
)
# At least one non-empty value: with none, wire gives "&key=K" and wechatpy "key=K" -- a
# request always has appid, mch_id, nonce_str, so that corner never reaches the wire.
PARAMS = st.dictionaries(NAMES, VALUES, max_size=12).filter(lambda p: any(p.values()))
ROUND_TRIP = st.dictionaries(NAMES, VALUES, max_size=12)
KEYS = st.text(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=32
)


@given(PARAMS, KEYS)
def test_md5_agrees_with_wechatpy(params: dict[str, str], key: str) -> None:
    assert wire.sign(params, key, "MD5") == calculate_signature(params, key)


@given(PARAMS, KEYS)
def test_hmac_agrees_with_wechatpy(params: dict[str, str], key: str) -> None:
    assert wire.sign(params, key, "HMAC-SHA256") == calculate_signature_hmac(params, key)


@given(ROUND_TRIP)
def test_xml_round_trip(params: dict[str, str]) -> None:
    assert wire.from_xml(wire.to_xml(params)) == params


def test_from_xml_reads_cdata_as_wechat_writes_it() -> None:
    body = b"<xml><return_code><![CDATA[SUCCESS]]></return_code><total_fee>1</total_fee></xml>"
    assert wire.from_xml(body) == {"return_code": "SUCCESS", "total_fee": "1"}


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE xml [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<xml><return_code>&lol9;</return_code></xml>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<xml><return_msg>&secret;</return_msg></xml>"""


@pytest.mark.parametrize(
    "body",
    [
        BILLION_LAUGHS,
        EXTERNAL_ENTITY,
        b"",
        b"not xml at all",
        b"<html><body>502 Bad Gateway</body></html>",
        b"<xml><a><b>nested</b></a></xml>",
        b'<?xml version="1.0" encoding="gbk"?><xml><a>1</a></xml>',
        b'<?xml version="1.0" encoding="no-such"?><xml><a>1</a></xml>',
        b"<xml><a>\xff\xfe</a></xml>",
        b"<xml>" + b"<a>x</a>" * (wire.MAX_BODY // 8) + b"</xml>",
    ],
    ids=[
        "billion-laughs",
        "external-entity",
        "empty",
        "text",
        "html",
        "nested",
        "gbk",
        "unknown-encoding",
        "bad-utf8",
        "too-large",
    ],
)
def test_from_xml_refuses(body: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.from_xml(body)
