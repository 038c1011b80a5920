# SPDX-License-Identifier: MIT
"""The receiver's JSON (posd/hq/codec.py): orjson when installed, the standard library
otherwise, and the same answer either way, for good bodies and bad ones."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from posd.core import hq_protocol as protocol
from posd.hq import codec
from posd.hq.client import HqClient, HqProtocolError
from tests.hq_fixtures import TOKEN, start_hq

RECORD = {"record_id": "sale:S001T01x:paid", "seq": 7, "day": "2024-05-01", "type": "sale",
          "version": 2, "sale": {"out_trade_no": "S001T01x", "amount": 1999, "state": "paid",
                                 "subject": "豆浆 ×2 “热”", "channel": None, "refunded": 0,
                                 "paid_at": 1714521600.25}}


@pytest.fixture(params=["orjson", "standard library"])
def implementation(request: pytest.FixtureRequest,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "orjson":
        assert codec.orjson is not None  # the test extra installs it, as `posd[hq]` does
    else:
        monkeypatch.setattr(codec, "orjson", None)
    yield request.param


def std(text: str | bytes) -> object:
    return json.loads(text)


@pytest.mark.parametrize("body", [
    json.dumps({"records": [RECORD]}, ensure_ascii=False).encode(),
    json.dumps({"records": [RECORD]}).encode(),  # \\u escapes
    b'{"a": [1, 2.5, -0.0, true, null, 1e300, -2.5E-300]}',
    json.dumps({"records": [RECORD]}).encode("utf-16"),  # the standard library detects it
    b'{"a": 1, "a": 2}',  # the last one wins, in both
    b'{"a": "\xed\xa0\x80"}',  # a lone surrogate, as UTF-8: orjson refuses, json takes it
    b'{"big": [18446744073709551615, -9223372036854775808, 1234567890123456789]}',  # 64 bits
    b'{"id": "S001T01261130040000000009", "n": 12345678901234567}',  # a long run in a string
])
def test_bodies_decode_as_the_standard_library_decodes_them(implementation: str,
                                                            body: bytes) -> None:
    decoded = codec.loads(body)
    assert decoded == std(body)
    assert repr(decoded) == repr(std(body))


@pytest.mark.parametrize("body", [
    b"", b"{", b'{"a": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}', b"\xff\xfe{", b"[1,]",
    b'{"a": [NaN, 1]}', b'{"a": 1e400}', b'{"a": -1E400}',
])
def test_what_is_not_json_is_refused_by_both(implementation: str, body: bytes) -> None:
    with pytest.raises(ValueError):
        codec.loads(body)


def test_an_integer_past_64_bits_is_a_float_from_orjson_and_rejected_where_ints_are_wanted(
        implementation: str) -> None:
    record = {**RECORD, "seq": 10**30}
    body = json.dumps({"protocol": 1, "store_id": "S001", "terminal_id": "T01",
                       "records": [record, RECORD]}).encode()
    batch = protocol.parse_batch(codec.loads(body))
    first, second = batch.records
    assert isinstance(second, protocol.Record)  # the other record of the batch is taken
    if implementation == "orjson":
        assert isinstance(first, protocol.Rejected) and "seq" in first.reason
    else:  # an int: left to the database, which refuses it (test_sync: stored one by one)
        assert isinstance(first, protocol.Record) and first.seq == 10**30


@pytest.mark.parametrize("data", [
    RECORD, {"n": 10**30, "s": "é"}, {"nested": [[], {}, "", 0, -1, 1.5, False]},
])
def test_records_encode_to_compact_json_that_decodes_to_themselves(implementation: str,
                                                                   data: object) -> None:
    text = codec.dumps(data)
    assert json.loads(text) == data
    assert text == json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def test_a_body_with_nan_is_not_a_batch_to_the_receiver(implementation: str,
                                                        tmp_path: Path) -> None:
    hq = start_hq(str(tmp_path / "hq.db"))
    client = HqClient(hq.url, TOKEN, TOKEN.encode(), timeout=(2.0, 5.0))
    try:
        body = (b'{"protocol": 1, "store_id": "S001", "terminal_id": "T01", "records": '
                b'[{"record_id": "x", "seq": NaN}]}')
        with pytest.raises(HqProtocolError, match=r"\(400\).*NaN is not JSON|\(400\)"):
            client.post_batch(body)
    finally:
        client.close()
        hq.stop()
