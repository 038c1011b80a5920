# SPDX-License-Identifier: MIT
"""Verifying Alipay answers over the raw ``_response`` text: fixtures that defeat naive verifiers.

Each fixture is a body as Alipay could write it, signed over the response member's exact text
(reference/channels.md §2.4). posd's verifier must accept every one. Beside it run the naive
ways of finding that text seen in the wild -- re-serialising the parsed JSON, counting braces
(python-alipay-sdk, called here for real), the official SDK's regex, gopay's substring -- and
each fixture names the ones it defeats, so a fixture that stops catching anything fails too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from alipay import AliPay
from alipay.exceptions import AliPayValidationError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from posd.core import alipay_wire as wire

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC = KEY.public_key()
METHOD = "alipay.trade.pay"
NAME = "alipay_trade_pay_response"
CERT_SN = "a5b59edf65dcda9ca26e071ab6f5a0a7"


def body(raw: str, layout: str = '{{"{name}":{raw},"sign":"{sign}"}}') -> bytes:
    """``layout`` filled with the raw member text and its signature."""
    return layout.format(name=NAME, raw=raw, sign=wire.sign_text(raw, KEY)).encode()


PAID = '{"code":"10000","msg":"Success","trade_no":"2024010122001","out_trade_no":"T1"}'

FIXTURES: dict[str, tuple[bytes, set[str]]] = {
    # Alipay writes "/" as "\/" (fzlee/alipay #21): json.dumps writes "/".
    "escaped-slash": (body(
        '{"code":"10000","msg":"Success","qr_code":"https:\\/\\/qr.alipay.com\\/bax03431",'
        '"out_trade_no":"T1"}'), {"reserialise", "reserialise-ascii"}),
    # Raw UTF-8 and \\u escapes in one answer: no ensure_ascii setting re-creates both.
    "unicode-both-ways": (body(
        '{"code":"40004","msg":"Business Failed","sub_code":"ACQ.BUYER_BALANCE_NOT_ENOUGH",'
        '"sub_msg":"买家余额不足","store_name":"\\u6d4b\\u8bd5\\u5e97"}'),
        {"reserialise", "reserialise-ascii"}),
    # A "}" inside a string ends python-alipay-sdk's brace count early (verified, §2.4).
    "braces-in-strings": (body(
        '{"code":"40004","msg":"Business Failed","sub_code":"ACQ.INVALID_PARAMETER",'
        '"sub_msg":"参数 {total_amount} 不合法}}"}'), {"brace-counting", "reserialise-ascii"}),
    # Escaped quotes and backslashes next to braces: a scanner must know string syntax.
    "quotes-and-backslashes": (body(
        '{"code":"10000","msg":"Success","memo":"say \\"}\\" \\\\","out_trade_no":"T1"}'),
        {"brace-counting"}),
    # Whitespace and line breaks are part of the signed text.
    "pretty-printed": (body(
        '{\n  "code": "10000",\n  "msg": "Success",\n  "out_trade_no": "T1"\n}',
        '{{\n "{name}" : {raw} ,\n "sign" : "{sign}"\n}}'),
        {"reserialise", "reserialise-ascii", "gopay-substring"}),
    # Nested objects and arrays, with braces inside their strings.
    "nested": (body(
        '{"code":"10000","msg":"Success","out_trade_no":"T1","fund_bill_list":'
        '[{"fund_channel":"ALIPAYACCOUNT","amount":"1.00","memo":"{"}],"extra":{"a":{}}}'),
        {"brace-counting"}),
    # The signature before the answer: nothing says "sign" comes last.
    "sign-first": (body(PAID, '{{"sign":"{sign}","{name}":{raw}}}'),
                   {"official-regex", "gopay-substring"}),
    # Certificate mode: alipay_cert_sn sits between the answer and sign (issue #165).
    "cert-sn": (body(PAID, '{{"{name}":{raw},"alipay_cert_sn":"' + CERT_SN + '","sign":"{sign}"}}'),
                {"official-regex"}),
    # The method's name inside another member's string, before the real member.
    "name-in-a-string": (body(PAID, '{{"note":"{name} {{","{name}":{raw},"sign":"{sign}"}}'),
                         {"brace-counting"}),
}


# --- naive verifiers, as found in SDKs ----------------------------------------------------------


def _reserialise(text: str) -> str:
    return json.dumps(json.loads(text)[NAME], ensure_ascii=False, separators=(",", ":"))


def _reserialise_ascii(text: str) -> str:
    return json.dumps(json.loads(text)[NAME], separators=(",", ":"))


def _brace_counting(text: str) -> str:
    client = AliPay.__new__(AliPay)  # only the pure extraction method is used
    return str(client._get_string_to_be_signed(text, NAME))


def _official_regex(text: str) -> str:
    """alipay-sdk-python-all: from the member's "{" to the *last* ``},"sign":"``."""
    start = re.search(rf'"{NAME}"\s*:\s*{{', text)
    ends = list(re.finditer(r'}\s*,\s*"sign"\s*:\s*"', text))
    if start is None or not ends:
        raise ValueError("not found")
    return text[start.end() - 1: ends[-1].start() + 1]


def _gopay_substring(text: str) -> str:
    """gopay: from the first ``_response":`` to the first ``,"sign":`` / ``,"alipay_cert_sn":``."""
    start = text.index('_response":') + len('_response":')
    ends = [i for i in (text.find(',"sign":'), text.find(',"alipay_cert_sn":')) if i > 0]
    return text[start:min(ends)]


NAIVE: dict[str, Callable[[str], str]] = {
    "reserialise": _reserialise,
    "reserialise-ascii": _reserialise_ascii,
    "brace-counting": _brace_counting,
    "official-regex": _official_regex,
    "gopay-substring": _gopay_substring,
}


def _naive_accepts(extract: Callable[[str], str], raw_body: bytes) -> bool:
    text = raw_body.decode()
    try:
        signed = extract(text)
    except (ValueError, KeyError):
        return False
    signature = json.loads(text)["sign"]
    return wire.verify_text(signed, signature, PUBLIC)


@pytest.mark.parametrize(("raw_body", "defeats"), FIXTURES.values(), ids=FIXTURES.keys())
def test_posd_verifies_over_the_raw_text(raw_body: bytes, defeats: set[str]) -> None:
    answer = wire.parse_answer(raw_body, METHOD)
    assert answer.key == NAME
    assert answer.verifies(PUBLIC)
    assert answer.text("code") in ("10000", "40004")


@pytest.mark.parametrize(("raw_body", "defeats"), FIXTURES.values(), ids=FIXTURES.keys())
def test_each_fixture_defeats_the_naive_verifiers_it_names(raw_body: bytes,
                                                           defeats: set[str]) -> None:
    failing = {name for name, extract in NAIVE.items() if not _naive_accepts(extract, raw_body)}
    assert failing == defeats


def test_the_naive_verifiers_do_work_on_a_plain_answer() -> None:
    """So that a naive verifier failing above is the fixture's doing, not a broken test."""
    plain = body(PAID)
    assert all(_naive_accepts(extract, plain) for extract in NAIVE.values())


def test_python_alipay_sdk_rejects_braces_in_strings_for_real() -> None:
    sdk = AliPay(appid="2021000000000000",
                 app_private_key_string=KEY.private_bytes(
                     serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                     serialization.NoEncryption()).decode(),
                 alipay_public_key_string=wire.public_pem(PUBLIC).decode())
    raw_body = FIXTURES["braces-in-strings"][0].decode()
    with pytest.raises(AliPayValidationError):
        sdk._verify_and_return_sync_response(raw_body, NAME)
    assert wire.parse_answer(raw_body.encode(), METHOD).verifies(PUBLIC)


# --- answers that are not answers ---------------------------------------------------------------


def test_a_changed_byte_fails() -> None:
    raw_body = FIXTURES["escaped-slash"][0].replace(b"bax03431", b"bax03432")
    assert not wire.parse_answer(raw_body, METHOD).verifies(PUBLIC)


def test_a_signature_over_the_unescaped_text_verifies_as_alipays_sdk_does() -> None:
    """Alipay writes "/" as "\\/" but signs the text with "/": its SDK checks again with the
    escape undone (AlipaySignature.checkResponseSign), and so does posd."""
    raw = '{"code":"10000","msg":"Success","store_name":"示例便利店\\/Example 1\\/F"}'
    unescaped = raw.replace("\\/", "/")
    answer = f'{{"{NAME}":{raw},"sign":"{wire.sign_text(unescaped, KEY)}"}}'.encode()
    assert wire.parse_answer(answer, METHOD).verifies(PUBLIC)


@pytest.mark.parametrize("rewrite", [
    lambda fields: json.dumps(fields, separators=(",", ":")),  # non-ASCII as \\uXXXX
    lambda fields: json.dumps(fields, ensure_ascii=False),  # other white space
    lambda fields: json.dumps(dict(reversed(fields.items())), ensure_ascii=False,
                              separators=(",", ":")),  # other member order
])
def test_a_signature_over_any_other_rewrite_fails(rewrite: Callable[[dict[str, str]], str]) -> None:
    raw = '{"code":"10000","msg":"成功","url":"https:\\/\\/x"}'
    other = rewrite(json.loads(raw)).replace("/", "\\/")
    assert other != raw
    forged = f'{{"{NAME}":{raw},"sign":"{wire.sign_text(other, KEY)}"}}'.encode()
    assert not wire.parse_answer(forged, METHOD).verifies(PUBLIC)


@pytest.mark.parametrize(
    ("raw_body", "expected"),
    [
        ('{"error_response":{"code":"40002","msg":"Invalid Arguments",'
         '"sub_code":"isv.invalid-method","sub_msg":"不存在的方法名"}}'.encode(), "error_response"),
        (('{"error_response":{"code":"40002","msg":"Invalid Arguments"},'
          f'"alipay_cert_sn":"{CERT_SN}","sign":""}}').encode(), "error_response"),
        (b'{"' + NAME.encode() + b'":{"code":"40002","sub_code":"isv.invalid-signature"}}', NAME),
    ],
    ids=["error-response", "error-response-cert-empty-sign", "unsigned-refusal"],
)
def test_unsigned_answers_parse_without_a_signature(raw_body: bytes, expected: str) -> None:
    answer = wire.parse_answer(raw_body, METHOD)
    assert (answer.key, answer.sign) == (expected, None)
    assert not answer.verifies(PUBLIC)
    assert answer.text("code") == "40002"


MALFORMED = {
    "empty": b"",
    "garbage": b"upstream connect error",
    "xml": b"<xml><return_code>SUCCESS</return_code></xml>",
    "array": b"[1,2]",
    "truncated": body(PAID)[:-5],
    "trailing-data": body(PAID) + b"{}",
    "duplicate-member": (f'{{"{NAME}":{PAID},"{NAME}":{{"code":"10000"}},"sign":"x"}}').encode(),
    "duplicate-sign": (f'{{"{NAME}":{PAID},"sign":"a","sign":"b"}}').encode(),
    "two-answers": (f'{{"{NAME}":{PAID},"error_response":{{"code":"40002"}}}}').encode(),
    "other-method": b'{"alipay_trade_query_response":' + PAID.encode() + b',"sign":"x"}',
    "not-an-object": f'{{"{NAME}":"10000","sign":"x"}}'.encode(),
    "sign-not-a-string": f'{{"{NAME}":{PAID},"sign":12}}'.encode(),
    "not-utf8": f'{{"{NAME}":{{"sub_msg":"'.encode() + "余额".encode("gbk") + b'"}}',
    "too-large": f'{{"{NAME}":{{"memo":"{"x" * 70000}"}}}}'.encode(),
    "deep": b'{"' + NAME.encode() + b'":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


@pytest.mark.parametrize("raw_body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_answers_are_refused(raw_body: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.parse_answer(raw_body, METHOD)
