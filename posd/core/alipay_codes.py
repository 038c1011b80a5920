# SPDX-License-Identifier: MIT
"""Alipay's result codes -> posd results: one table per call (reference/channels.md §2.6-§2.9).

A code or sub_code not listed here is Unknown: never decline what we do not understand.
Declined messages are sentences a cashier can act on; Alipay's ``sub_msg`` is appended.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from posd.core.sale import ChannelResult, Closed, Declined, NotFound, Pending, Refused, Unknown
from posd.core.refund import RefundAnswer, RefundRefused

#: Gateway codes that mean the request was not accepted (§2.6): no trade was made.
#: 20001 token permissions, 40001 missing arguments, 40002 invalid arguments (signature,
#: app id, timestamp), 40006 insufficient permissions (not signed up for 当面付).
GATEWAY_REFUSALS: Final = frozenset({"20001", "40001", "40002", "40006"})

#: Unknown whatever the code says ("Whether ACQ.SYSTEM_ERROR arrives with code=20000 or
#: 40004 -- treat the sub_code as unknown regardless", §6). AQC.* is the doc's typo (§2.9).
SYSTEM_ERRORS: Final = frozenset({"ACQ.SYSTEM_ERROR", "AQC.SYSTEM_ERROR"})

MISCONFIGURED: Final = (
    "The till is misconfigured for Alipay; no money was taken. "
    "Ask the store manager to check the Alipay settings, or take another payment method."
)
CANCEL_REFUSED: Final = "Alipay refused to cancel this payment"
_NEW_CODE: Final = "ask the customer to refresh the payment code and scan again"
_OTHER_WAY: Final = "ask the customer to choose another payment method in Alipay or pay another way"
_LIMIT: Final = "The amount is over this shop's Alipay limit; no money was taken: take another payment method."

_DECLINES: Final = {
    # user / code failures (§2.7)
    "ACQ.PAYMENT_AUTH_CODE_INVALID": f"The payment code is invalid or expired: {_NEW_CODE}.",
    "ACQ.BUYER_BALANCE_NOT_ENOUGH": f"Not enough balance: {_OTHER_WAY}.",
    "ACQ.BUYER_BANKCARD_BALANCE_NOT_ENOUGH": f"Not enough money on the customer's bank card: {_OTHER_WAY}.",
    "ACQ.ERROR_BALANCE_PAYMENT_DISABLE": f"The customer's Alipay balance cannot be used: {_OTHER_WAY}.",
    "ACQ.PAYMENT_FAIL": f"Alipay could not take the payment: {_NEW_CODE} (once).",
    "ACQ.PULL_MOBILE_CASHIER_FAIL": f"Alipay could not ask the customer's phone to confirm: {_NEW_CODE}.",
    "ACQ.MOBILE_PAYMENT_SWITCH_OFF": "The customer has turned mobile payments off in Alipay: "
    "ask them to turn it on, or pay another way.",
    "ACQ.USER_FACE_PAYMENT_SWITCH_OFF": "The customer has turned payment codes (付款码) off in "
    "Alipay: ask them to turn it on, or pay another way.",
    "ACQ.BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR": "The customer has reached their daily Alipay "
    "limit: ask them to pay another way.",
    "ACQ.BUYER_PAYMENT_AMOUNT_MONTH_LIMIT_ERROR": "The customer has reached their monthly "
    "Alipay limit: ask them to pay another way.",
    "ACQ.BUYER_ENABLE_STATUS_FORBID": "The customer's Alipay account cannot pay at the moment: "
    "ask them to pay another way.",
    "ACQ.ERROR_BUYER_CERTIFY_LEVEL_LIMIT": "The customer's Alipay account is not verified "
    "(实名认证) for this payment: ask them to pay another way.",
    "ACQ.PAYMENT_REQUEST_HAS_RISK": "Alipay refused this payment (risk control): ask the "
    "customer to pay another way.",
    "ACQ.NO_PAYMENT_INSTRUMENTS_AVAILABLE": f"No payment method is available: {_OTHER_WAY}.",
    "ACQ.BUYER_SELLER_EQUAL": "The customer's account is this shop's own Alipay account: "
    "ask for another account or payment method.",
    # order state: final for this out_trade_no; a new code makes a new sale
    "ACQ.TRADE_HAS_CLOSE": "Alipay has closed this payment: start a new sale.",
    "ACQ.TRADE_BUYER_NOT_MATCH": "Another Alipay account already tried this sale: start a new sale.",
    # amount limits of the merchant's contract
    "ACQ.TOTAL_FEE_EXCEED": _LIMIT,
    "ACQ.BEYOND_PAY_RESTRICTION": _LIMIT,
    "ACQ.BEYOND_PER_RECEIPT_RESTRICTION": _LIMIT,
}  # fmt: skip

#: Merchant / configuration errors: final for this attempt, the operator must fix the setup.
CONFIG_SUB_CODES: Final = (
    "ACQ.INVALID_PARAMETER", "ACQ.ACCESS_FORBIDDEN", "ACQ.EXIST_FORBIDDEN_WORD",
    "ACQ.PARTNER_ERROR", "ACQ.SELLER_BEEN_BLOCKED", "ACQ.INVALID_STORE_ID",
)  # fmt: skip

#: trade.pay ``sub_code`` (with code 40004) -> result (§2.7).
PAY_SUB_CODES: Final[Mapping[str, ChannelResult]] = {
    "ACQ.SYSTEM_ERROR": Unknown("ACQ.SYSTEM_ERROR: Alipay system error, outcome unknown"),
    # "Already paid": a retry of an attempt that did succeed. Alipay's doc says to confirm
    # the trade is this buyer's; posd never reuses an out_trade_no with another code, so the
    # query that follows confirms it (and gives trade_no and the amount).
    "ACQ.TRADE_HAS_SUCCESS": Unknown("ACQ.TRADE_HAS_SUCCESS: already paid: query"),
    # The number was used with other data: a posd bug, but a trade exists under it and may
    # be paid. Declining could hide a payment, so query (and cancel at the deadline).
    "ACQ.CONTEXT_INCONSISTENT": Unknown("ACQ.CONTEXT_INCONSISTENT: number used before: query"),
    **{code: Declined(code, message) for code, message in _DECLINES.items()},
    **{code: Declined(code, MISCONFIGURED) for code in CONFIG_SUB_CODES},
}

#: trade.query ``sub_code`` (code 40004) -> result (§2.8). Anything else, including
#: ACQ.INVALID_PARAMETER, says nothing about the trade: Unknown.
QUERY_SUB_CODES: Final[Mapping[str, ChannelResult]] = {
    # After a pay timeout this can mean the pay never reached Alipay (yet): not a decline.
    "ACQ.TRADE_NOT_EXIST": NotFound("ACQ.TRADE_NOT_EXIST"),
}

#: trade.query ``trade_status`` (code 10000) -> result; TRADE_SUCCESS and TRADE_FINISHED are
#: paid (they carry data). TRADE_CLOSED: unpaid and closed, or fully refunded.
TRADE_STATUSES: Final[Mapping[str, ChannelResult]] = {
    "WAIT_BUYER_PAY": Pending("WAIT_BUYER_PAY"),
    "TRADE_CLOSED": Closed("TRADE_CLOSED", refunded=None),
}

#: trade.cancel ``sub_code`` (code 40004, retry_flag not Y) -> result (§2.9). Refused means
#: a person must act (posd.core.sale: needs_attention).
CANCEL_SUB_CODES: Final[Mapping[str, ChannelResult]] = {
    "ACQ.SYSTEM_ERROR": Unknown("ACQ.SYSTEM_ERROR: cancel again"),
    "AQC.SYSTEM_ERROR": Unknown("AQC.SYSTEM_ERROR: cancel again"),
    # Not in the cancel list of §2.9, but its meaning is the query's: there is no trade.
    "ACQ.TRADE_NOT_EXIST": NotFound("ACQ.TRADE_NOT_EXIST"),
    "ACQ.INVALID_PARAMETER": Refused("ACQ.INVALID_PARAMETER", CANCEL_REFUSED),
    "ACQ.SELLER_BALANCE_NOT_ENOUGH": Refused(
        "ACQ.SELLER_BALANCE_NOT_ENOUGH",
        "The trade is paid but the shop's Alipay balance is too low to return the money: "
        "top it up, then refund the customer",
    ),
    "ACQ.REASON_TRADE_BEEN_FREEZEN": Refused(
        "ACQ.REASON_TRADE_BEEN_FREEZEN", "Alipay has frozen this trade: call Alipay"
    ),
    # Not in §2.9 (its list is not exhaustive); Alipay's cancel error table names it for a
    # cancel past the allowed window (not re-verified). posd.core.sale queries the trade and
    # says "refund it" if it is paid.
    "ACQ.TRADE_CANCEL_TIME_OUT": Refused(
        "ACQ.TRADE_CANCEL_TIME_OUT", "Alipay no longer cancels this trade (撤销超时)",
        too_late=True,
    ),
    # 交易已完结 -- "the trade is finished": it cannot be cancelled any more; query it to
    # learn whether it is paid (then a person refunds it) or closed.
    "ACQ.TRADE_HAS_FINISHED": Refused(
        "ACQ.TRADE_HAS_FINISHED", "Alipay says the trade is finished (交易已完结)", too_late=True,
    ),
    # 交易不允许撤销 -- "the trade may not be cancelled" (e.g. a product that has no cancel).
    "ACQ.CANCEL_NOT_ALLOWED": Refused(
        "ACQ.CANCEL_NOT_ALLOWED", f"{CANCEL_REFUSED}: the trade may not be cancelled "
        "(交易不允许撤销); check it in the Alipay console and refund it if it was paid",
    ),
    # 退款金额无效 / 退款金额不合法 -- the refund that a cancel of a paid trade makes was refused.
    "ACQ.REASON_TRADE_REFUND_FEE_ERR": Refused(
        "ACQ.REASON_TRADE_REFUND_FEE_ERR", f"{CANCEL_REFUSED}: Alipay refused to return the "
        "money (退款金额无效); check the trade in the Alipay console",
    ),
}

#: trade.refund ``sub_code`` (code 40004) -> answer (§2.10). Not listed (ACQ.SYSTEM_ERROR,
#: ACQ.DISCORDANT_REPEAT_REQUEST -- the same number with other data, a posd bug -- and new
#: codes): Unknown, and posd asks refund.query before anything else.
_REFUND_REFUSED: Final = "Alipay refused the refund; no money moved"
REFUND_SUB_CODES: Final[Mapping[str, RefundAnswer]] = {
    "ACQ.SELLER_BALANCE_NOT_ENOUGH": RefundRefused(
        "ACQ.SELLER_BALANCE_NOT_ENOUGH", "the shop's Alipay balance is too low: top it up"),
    "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL": RefundRefused(
        "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "more than is left of the payment (退款金额超限)"),
    "ACQ.REASON_TRADE_BEEN_FREEZEN": RefundRefused(
        "ACQ.REASON_TRADE_BEEN_FREEZEN", "Alipay has frozen this trade: call Alipay"),
    "ACQ.TRADE_NOT_EXIST": RefundRefused("ACQ.TRADE_NOT_EXIST", "Alipay has no such trade"),
    "ACQ.TRADE_HAS_FINISHED": RefundRefused(
        "ACQ.TRADE_HAS_FINISHED", "the trade is finished and can no longer be refunded"),
    "ACQ.TRADE_STATUS_ERROR": RefundRefused("ACQ.TRADE_STATUS_ERROR", _REFUND_REFUSED),
    "ACQ.REASON_TRADE_REFUND_FEE_ERR": RefundRefused(
        "ACQ.REASON_TRADE_REFUND_FEE_ERR", "the refund amount is not valid (退款金额无效)"),
    "ACQ.TRADE_NOT_ALLOW_REFUND": RefundRefused(
        "ACQ.TRADE_NOT_ALLOW_REFUND", "this trade may not be refunded (当前交易不允许退款)"),
    **{code: RefundRefused(code, MISCONFIGURED) for code in CONFIG_SUB_CODES},
}
