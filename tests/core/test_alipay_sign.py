# SPDX-License-Identifier: MIT
"""Alipay RSA2 signing and keys: python-alipay-sdk and ``openssl dgst`` as independent oracles.

No fixed-key vector for Alipay is public (reference/channels.md §5), so keys are generated
here and every signature is compared byte for byte with two independent signers
(RSASSA-PKCS1-v1_5 is deterministic).
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from alipay import AliPay
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from posd.core import alipay_wire as wire

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PKCS1 = KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                          serialization.NoEncryption())
PKCS8 = KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
PUBLIC = wire.public_pem(KEY.public_key())

#: §2.3's string-to-sign, verified there against python-alipay-sdk.
VERIFIED_STRING = (
    'app_id=2021000000000000&biz_content={"out_trade_no":"T1","scene":"bar_code",'
    '"auth_code":"28763443825664394","subject":"\\u6d4b\\u8bd5","total_amount":"0.01"}'
    "&charset=utf-8&method=alipay.trade.pay&sign_type=RSA2&timestamp=2024-01-01 12:00:00"
    "&version=1.0"
)
TEXTS = [
    VERIFIED_STRING,
    "app_id=1&biz_content={\"subject\":\"拿铁 咖啡 / latte {big}\"}&method=alipay.trade.pay",
    "",
    "a" * 5000,
]


def sdk(private: bytes = PKCS1) -> AliPay:
    """python-alipay-sdk 3.4.0 (pycryptodomex underneath: an independent RSA implementation)."""
    return AliPay(appid="2021000000000000", app_private_key_string=private.decode(),
                  alipay_public_key_string=PUBLIC.decode(), sign_type="RSA2")


def test_string_to_sign_is_the_verified_one() -> None:
    params = {
        "app_id": "2021000000000000", "method": "alipay.trade.pay", "charset": "utf-8",
        "sign_type": "RSA2", "timestamp": "2024-01-01 12:00:00", "version": "1.0",
        "biz_content": '{"out_trade_no":"T1","scene":"bar_code","auth_code":"28763443825664394",'
                       '"subject":"\\u6d4b\\u8bd5","total_amount":"0.01"}',
        "sign": "skipped", "notify_url": "",  # sign and empty values are not signed
    }  # fmt: skip
    assert wire.string_to_sign(params) == VERIFIED_STRING


def test_string_to_sign_equals_python_alipay_sdks_build_body() -> None:
    client = sdk()
    biz = {"out_trade_no": "T1", "scene": "bar_code", "auth_code": "28763443825664394",
           "subject": "测试", "total_amount": "0.01", "store_id": "S001", "terminal_id": "T01"}
    data = client.build_body("alipay.trade.pay", biz)
    data["timestamp"] = "2024-01-01 12:00:00"  # the SDK stamps local time; pinned here
    ordered = client._ordered_data(data)
    expected = "&".join(f"{k}={v}" for k, v in ordered)
    assert wire.string_to_sign(dict(ordered)) == expected


@pytest.mark.parametrize("private", [PKCS1, PKCS8], ids=["pkcs1", "pkcs8"])
@pytest.mark.parametrize("text", TEXTS, ids=["verified", "chinese-braces", "empty", "long"])
def test_signature_equals_python_alipay_sdks(private: bytes, text: str) -> None:
    client = sdk(private)
    ours = wire.sign_text(text, wire.load_private_key(private))
    assert ours == client._sign(text)
    assert client._verify(text, ours)
    assert wire.verify_text(text, client._sign(text), KEY.public_key())


@pytest.mark.parametrize("private", [PKCS1, PKCS8], ids=["pkcs1", "pkcs8"])
@pytest.mark.parametrize("text", TEXTS[:2], ids=["verified", "chinese-braces"])
def test_signature_equals_openssl_dgst(tmp_path: Path, private: bytes, text: str) -> None:
    key_file, pub_file, sig_file = tmp_path / "key.pem", tmp_path / "pub.pem", tmp_path / "sig"
    key_file.write_bytes(private)
    key_file.chmod(0o600)
    pub_file.write_bytes(PUBLIC)
    signed = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key_file)],
                            input=text.encode(), capture_output=True, check=True)
    ours = wire.sign_text(text, wire.load_private_key(private))
    assert ours == base64.b64encode(signed.stdout).decode()
    sig_file.write_bytes(base64.b64decode(ours))
    checked = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(pub_file),
                              "-signature", str(sig_file)],
                             input=text.encode(), capture_output=True, check=False)
    assert checked.stdout.strip() == b"Verified OK"


def test_request_sign_covers_everything_but_sign() -> None:
    params = {"app_id": "1", "method": "m", "biz_content": "{}", "sign_type": "RSA2"}
    signed = params | {"sign": wire.sign(params, KEY)}
    assert wire.verify(signed, KEY.public_key())
    assert not wire.verify(signed | {"app_id": "2"}, KEY.public_key())
    assert not wire.verify(signed | {"sign_type": "RSA"}, KEY.public_key())  # sign_type is signed
    assert not wire.verify(params, KEY.public_key())  # no sign
    assert not wire.verify(signed | {"sign": "not base64!"}, KEY.public_key())
    assert not wire.verify(params | {"sign": wire.sign(params, OTHER)}, KEY.public_key())


# --- keys -----------------------------------------------------------------------------------


def _bare(pem: bytes) -> bytes:
    """What Alipay's key tool and console hand out: base64 DER without the PEM lines."""
    return b"".join(line for line in pem.splitlines() if not line.startswith(b"-----"))


@pytest.mark.parametrize(
    "private",
    [PKCS1, PKCS8, _bare(PKCS1), _bare(PKCS8), b"\n  " + PKCS1 + b"\n"],
    ids=["pkcs1", "pkcs8", "bare-pkcs1", "bare-pkcs8", "padded"],
)
def test_private_key_formats_sign_alike(private: bytes) -> None:
    assert wire.sign_text("x", wire.load_private_key(private)) == wire.sign_text("x", KEY)


@pytest.mark.parametrize(
    "public",
    [PUBLIC, _bare(PUBLIC), KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.PKCS1)],
    ids=["spki", "bare-spki", "pkcs1"],
)
def test_public_key_formats(public: bytes) -> None:
    assert wire.same_key(wire.load_public_key(public), KEY.public_key())


def _encrypted() -> bytes:
    return KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.BestAvailableEncryption(b"secret"))


def _small() -> bytes:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return small.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())


def _ec() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


@pytest.mark.parametrize(
    "data", [b"", b"hello", PUBLIC, _encrypted(), _small(), _ec(), PKCS1[:200]],
    ids=["empty", "garbage", "public-key", "encrypted", "1024-bit", "ec", "truncated"],
)
def test_unusable_private_keys_are_refused_without_echoing_them(data: bytes) -> None:
    with pytest.raises(wire.WireError) as caught:
        wire.load_private_key(data)
    assert _bare(PKCS1)[20:60].decode() not in str(caught.value)
    assert _bare(PKCS1)[20:60].decode() not in repr(caught.value.__cause__ or "")


@pytest.mark.parametrize("data", [b"", b"hello", PKCS8], ids=["empty", "garbage", "private"])
def test_unusable_public_keys_are_refused(data: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.load_public_key(data)


# --- property: whatever Alipay writes, the raw text verifies -----------------------------------

_VALUES = st.recursive(
    st.text() | st.integers() | st.booleans() | st.none(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(fields=st.dictionaries(st.text(), _VALUES, max_size=6))
def test_rendered_answers_parse_and_verify(fields: dict[str, object]) -> None:
    body = wire.render_answer("alipay_trade_pay_response", fields, KEY)
    answer = wire.parse_answer(body, "alipay.trade.pay")
    assert answer.fields == fields
    assert answer.verifies(KEY.public_key())
    assert not answer.verifies(OTHER.public_key())

