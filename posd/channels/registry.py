# SPDX-License-Identifier: MIT
"""The registry of payment channels: name -> :class:`~posd.channels.spec.ChannelSpec`.

WeChat Pay (v2, and v3 codepay) and Alipay are registered when this module is imported; another channel (a test
channel in tests/shell/test_channel_registry.py, a future UnionPay) calls :func:`register`
before the config is read. The order of registration is the order channels are listed in
(config errors, ``/v1/health``, ``posd doctor``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import date

from posd.channels import alipay, wechat, wechat_v3
from posd.core.bills import Bill
from posd.channels.spec import ChannelSpec
from posd.core.codes import CHANNEL_NAMES, OTHER_RULES, PrefixRule

_SPECS: dict[str, ChannelSpec] = {}


def register(spec: ChannelSpec) -> ChannelSpec:
    """Add ``spec`` (ValueError when another channel has its name). Returns it."""
    if spec.name in _SPECS and _SPECS[spec.name] is not spec:
        raise ValueError(f"a channel named {spec.name!r} is registered already")
    _SPECS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a channel (tests that registered one)."""
    _SPECS.pop(name, None)


def find(name: str) -> ChannelSpec | None:
    return _SPECS.get(name)


def get(name: str) -> ChannelSpec:
    """The spec of ``name``; KeyError naming the known channels when there is none."""
    if (spec := _SPECS.get(name)) is None:
        raise KeyError(f"no channel {name!r} (known: {', '.join(_SPECS)})")
    return spec


def names() -> tuple[str, ...]:
    return tuple(_SPECS)


def code_rules() -> tuple[PrefixRule, ...]:
    """Every channel's payment code prefixes, then those of channels posd recognises but
    does not take (UnionPay), so that the cashier hears which app the code is from."""
    return tuple(rule for spec in _SPECS.values() for rule in spec.code_rules) + OTHER_RULES


def takers(enabled: Iterable[str]) -> dict[str, str]:
    """``classified channel -> the enabled channel that takes its codes``: each enabled
    channel takes its own, and one that ``replaces`` another takes that one's too (WeChat
    Pay v3 takes WeChat's codes when enabled, whether or not v2 is still enabled)."""
    on = set(enabled)
    taken = {name: name for name in _SPECS if name in on}
    for spec in _SPECS.values():
        if spec.name in on and spec.replaces:
            taken[spec.replaces] = spec.name
    return taken


def bill_members(name: str) -> frozenset[str]:
    """The channels whose sales channel ``name``'s bill covers: its own, and the one it
    replaces (one merchant account behind both APIs has one bill)."""
    spec = _SPECS.get(name)
    return frozenset({name, spec.replaces} - {""}) if spec is not None else frozenset({name})


def bills() -> dict[str, tuple[Callable[[bytes, date], Bill], str]]:
    """``name -> (bill parser, kept file's extension)`` of the channels posd reconciles."""
    return {spec.name: spec.bill for spec in _SPECS.values() if spec.bill is not None}


def labels() -> Mapping[str, tuple[str, str]]:
    """``name -> (English, Chinese)`` for receipts and reports (UnionPay's too)."""
    return dict(CHANNEL_NAMES) | {spec.name: (spec.label, spec.label_zh) for spec in _SPECS.values()}


def english_labels() -> Mapping[str, str]:
    """``name -> English label`` for the cashier's messages and logs."""
    return {name: en for name, (en, _) in labels().items()}


register(wechat.SPEC)
register(alipay.SPEC)
register(wechat_v3.SPEC)
