# SPDX-License-Identifier: MIT
from __future__ import annotations

import pytest

from posd.channels.simulator import AlipayKeys, TestPki, make_alipay_keys, make_test_pki
from posd.channels.wechat_v3.sandbox_keys import WechatV3Keys, make_wechat_v3_keys
from tests.postgres import postgres_cluster, postgres_url  # noqa: F401 - fixtures
from tests.sandbox import Clock


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """One throw-away CA with server and merchant client certificates for the whole run."""
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def alipay_keys(tmp_path_factory: pytest.TempPathFactory) -> AlipayKeys:
    """The Alipay sandbox's two RSA2 key pairs (the app's, the simulator's) for the whole run."""
    return make_alipay_keys(tmp_path_factory.mktemp("alipay-keys"))


@pytest.fixture(scope="session")
def wechat_v3_keys(tmp_path_factory: pytest.TempPathFactory) -> WechatV3Keys:
    """The merchant key, the WeChat Pay public key and a platform certificate (v3)."""
    return make_wechat_v3_keys(tmp_path_factory.mktemp("wechat-v3-keys"))


@pytest.fixture
def clock() -> Clock:
    """The simulator's (and a client's) time, moved by the test."""
    return Clock()

