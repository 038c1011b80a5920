# SPDX-License-Identifier: MIT
"""WeChat Pay v3 signatures both ways against an independent reference, ``wechatpayv3``
(a test dependency; its ``utils`` and its ``Core`` client): posd's request signatures are
the reference's, byte for byte; the reference verifies posd's (the simulator's) answers; and
the reference's own client talks to the simulator, which verifies its requests (issue 15)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from wechatpayv3 import core, utils
from wechatpayv3 import type as wechatpay_type

from posd.channels.simulator import Simulator
from posd.channels.wechat_v3.sandbox_keys import WechatV3Keys
from posd.core import wechat_v3_wire as wire
from tests.sandbox import WECHAT, WECHAT_V3_APPID, wechat_v3_sandbox


BODY = json.dumps({"appid": WECHAT_V3_APPID, "mchid": WECHAT.mch_id, "description": "茶",
                   "out_trade_no": "S001T01V30000000000000001",
                   "payer": {"auth_code": "134567890123450000"},
                   "amount": {"total": 100, "currency": "CNY"},
                   "scene_info": {"device_ip": "127.0.0.1", "store_info": {"out_id": "S001"}}},
                  ensure_ascii=False)


def _pem(path: object) -> str:
    return path.read_text()  # type: ignore[attr-defined, no-any-return]


def test_request_signature_equals_the_reference(wechat_v3_keys: WechatV3Keys) -> None:
    key = wire.load_private_key(wechat_v3_keys.merchant_key_file.read_bytes())
    reference_key = utils.load_private_key(_pem(wechat_v3_keys.merchant_key_file))
    url = "/v3/pay/transactions/out-trade-no/S001T01V3X?mchid=10000100"
    for method, body in (("POST", BODY), ("GET", "")):
        sign_str = f"{method}\n{url}\n1733100000\nNONCE123\n{body}\n"
        ours = wire.sign(wire.request_message(method, url, "1733100000", "NONCE123",
                                              body.encode()), key)
        assert ours == utils.rsa_sign(reference_key, sign_str)  # PKCS#1 v1.5 is deterministic


def test_the_reference_authorization_parses_and_verifies(wechat_v3_keys: WechatV3Keys) -> None:
    reference_key = utils.load_private_key(_pem(wechat_v3_keys.merchant_key_file))
    header = utils.build_authorization("/v3/pay/transactions/codepay", "POST", WECHAT.mch_id,
                                       wechat_v3_keys.merchant_serial_no, reference_key,
                                       data=BODY)
    fields = wire.parse_authorization(header)
    assert fields["mchid"] == WECHAT.mch_id
    assert fields["serial_no"] == wechat_v3_keys.merchant_serial_no
    public = wire.load_certificate(wechat_v3_keys.merchant_cert_file.read_bytes()).public_key()
    message = wire.request_message("POST", "/v3/pay/transactions/codepay", fields["timestamp"],
                                   fields["nonce_str"], BODY.encode())
    assert wire.verify(message, fields["signature"], public)  # type: ignore[arg-type]
    ours = wire.authorization(mchid=WECHAT.mch_id, serial_no=fields["serial_no"],
                              nonce=fields["nonce_str"], timestamp=fields["timestamp"],
                              signature=fields["signature"])
    assert ours == header


@pytest.mark.parametrize("signer", ["public_key", "platform"])
def test_the_reference_verifies_answers_and_posd_verifies_the_reference(
        wechat_v3_keys: WechatV3Keys, signer: str) -> None:
    if signer == "public_key":
        private_file, name = wechat_v3_keys.public_private_key_file, wechat_v3_keys.public_key_id
        public = utils.load_public_key(_pem(wechat_v3_keys.public_key_file))
    else:
        private_file, name = (wechat_v3_keys.platform_private_key_file,
                              wechat_v3_keys.platform_serial)
        public = utils.load_certificate(_pem(wechat_v3_keys.platform_cert_file)).public_key()
    key = wire.load_private_key(private_file.read_bytes())
    body = '{"trade_state":"SUCCESS","说明":"支付成功"}'.encode()
    signed = wire.sign_answer(body, key, name, timestamp="1733100000", nonce="abc")
    assert utils.rsa_verify("1733100000", "abc", body.decode(), signed.signature, public)
    assert not utils.rsa_verify("1733100001", "abc", body.decode(), signed.signature, public)
    # and the other way: the reference's signature, checked by posd's verifier
    reference = utils.rsa_sign(utils.load_private_key(_pem(private_file)),
                               f"1733100000\nabc\n{body.decode()}\n")
    verifier = wire.Verifier(public_key=(wechat_v3_keys.public_key_id, wire.load_public_key(
        wechat_v3_keys.public_key_file.read_bytes())), certificates={
        wechat_v3_keys.platform_serial: wire.load_certificate(
            wechat_v3_keys.platform_cert_file.read_bytes()).public_key()})  # type: ignore[dict-item]
    good = wire.AnswerSignature("1733100000", "abc", reference, name)
    assert verifier.problem(good, body) is None
    assert verifier.problem(good, body + b" ") == "the answer's signature does not verify"
    assert "does not hold" in str(verifier.problem(
        wire.AnswerSignature("1733100000", "abc", reference, "PUB_KEY_ID_OTHER"), body))


@pytest.fixture(name="plain_sim")
def _plain_sim(wechat_v3_keys: WechatV3Keys) -> Iterator[Simulator]:
    # Plain HTTP on loopback: the reference client has no CA setting to trust the test PKI.
    with Simulator(wechat=WECHAT, confirm_delay_s=60, min_reverse_delay_s=0.0, sandboxes={
            "wechat_v3": wechat_v3_sandbox(wechat_v3_keys, mode="public_key")}) as sim:
        yield sim


def test_the_reference_client_pays_queries_and_reverses_at_the_simulator(
        plain_sim: Simulator, wechat_v3_keys: WechatV3Keys) -> None:
    client = core.Core(WECHAT.mch_id, wechat_v3_keys.merchant_serial_no,
                       _pem(wechat_v3_keys.merchant_key_file), apiv3_key="0" * 32,
                       public_key=_pem(wechat_v3_keys.public_key_file),
                       public_key_id=wechat_v3_keys.public_key_id, timeout=(2, 5))
    client._gate_way = plain_sim.url  # noqa: SLF001 - the reference has no base URL setting
    number = "S001T01V30000000000000001"
    # Core raises "failed to verify the signature" if a 2xx answer does not verify.
    status, text = client.request("/v3/pay/transactions/codepay",
                                  method=wechatpay_type.RequestType.POST,
                                  data=json.loads(BODY))
    assert status == 200 and json.loads(text)["trade_state"] == "SUCCESS", text
    status, text = client.request(f"/v3/pay/transactions/out-trade-no/{number}"
                                  f"?mchid={WECHAT.mch_id}")
    assert status == 200 and json.loads(text)["transaction_id"]
    status, text = client.request(f"/v3/pay/transactions/out-trade-no/{number}/reverse",
                                  method=wechatpay_type.RequestType.POST,
                                  data={"appid": WECHAT_V3_APPID, "mchid": WECHAT.mch_id})
    assert status == 200, text
    assert plain_sim.trade(number)["state"] == "refunded"  # type: ignore[index]
    assert not [v for v in plain_sim.violations() if v["rule"] == "request_rejected"]


def test_the_simulator_refuses_a_request_signed_with_another_key(
        plain_sim: Simulator, wechat_v3_keys: WechatV3Keys, tmp_path: object) -> None:
    from posd.channels.wechat_v3.sandbox_keys import make_wechat_v3_keys

    other = make_wechat_v3_keys(tmp_path / "other")  # type: ignore[operator]
    client = core.Core(WECHAT.mch_id, wechat_v3_keys.merchant_serial_no,
                       _pem(other.merchant_key_file), apiv3_key="0" * 32,
                       public_key=_pem(wechat_v3_keys.public_key_file),
                       public_key_id=wechat_v3_keys.public_key_id, timeout=(2, 5))
    client._gate_way = plain_sim.url  # noqa: SLF001
    status, text = client.request("/v3/pay/transactions/codepay",
                                  method=wechatpay_type.RequestType.POST, data=json.loads(BODY))
    assert status == 401 and json.loads(text)["code"] == "SIGN_ERROR"
    assert plain_sim.ledger() == []
