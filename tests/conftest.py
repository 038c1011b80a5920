# SPDX-License-Identifier: MIT
from __future__ import annotations

import pytest

from posd.channels.simulator import TestPki, make_test_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """One throw-away CA with server and merchant client certificates for the whole run."""
    return make_test_pki(tmp_path_factory.mktemp("pki"))
