# SPDX-License-Identifier: MIT
"""The local API off loopback: refused without TLS (the bearer token would cross the shop's
network in clear text), served over HTTPS with api.tls_cert_file / api.tls_key_file, and the
CLI's client trusting exactly that certificate."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from posd.channels.simulator import TestPki
from posd.client import ApiClient
from posd.config import Config, load
from posd.daemon import Daemon
from posd.core.errors import ConfigError
from tests.sandbox import make_config, secret, start_simulator, to_toml


def written(tmp_path: Path, data: dict[str, object]) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(to_toml(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("listen", ["0.0.0.0:8637", "192.168.1.20:8637", "[::]:8637"])
def test_a_non_loopback_listen_needs_tls(tmp_path: Path, pki: TestPki, listen: str) -> None:
    data = make_config(tmp_path, "https://127.0.0.1:1", pki)
    data["api"]["listen"] = listen
    with pytest.raises(ConfigError, match=r"api\.listen .* not a loopback address.*"
                                          r"api\.tls_cert_file"):
        load(written(tmp_path, data))


def test_tls_files_go_together_and_the_key_must_be_private(tmp_path: Path,
                                                           pki: TestPki) -> None:
    data = make_config(tmp_path, "https://127.0.0.1:1", pki)
    data["api"]["tls_cert_file"] = str(pki.server_cert_file)
    with pytest.raises(ConfigError, match="api.tls_cert_file and api.tls_key_file go together"):
        load(written(tmp_path, data))
    key = tmp_path / "api-key.pem"
    key.write_bytes(pki.server_key_file.read_bytes())
    key.chmod(0o644)
    data["api"]["tls_key_file"] = str(key)
    with pytest.raises(ConfigError, match="api.tls_key_file: .*readable by group/others"):
        load(written(tmp_path, data))


def test_https_on_all_addresses_with_the_clients_pinned_certificate(tmp_path: Path,
                                                                    pki: TestPki) -> None:
    sim = start_simulator(pki)
    key = tmp_path / "api-key.pem"
    key.write_bytes(pki.server_key_file.read_bytes())
    key.chmod(0o600)
    data = make_config(tmp_path, sim.url, pki)
    data["api"].update(listen="0.0.0.0:0", tls_cert_file=str(pki.server_cert_file),
                       tls_key_file=str(key))
    config = load(written(tmp_path, data))
    daemon = Daemon.build(config)
    daemon.start()
    try:
        port = daemon.api.port
        assert daemon.api.url.startswith("https://")
        with pytest.raises(requests.ConnectionError):  # plain HTTP is not spoken there
            requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=5)
        with pytest.raises(requests.exceptions.SSLError):  # nor trusted without the cert
            requests.get(f"https://127.0.0.1:{port}/v1/health", timeout=5)
        live = Config.model_validate(config.model_dump() | {
            "api": config.api.model_dump() | {"listen": f"0.0.0.0:{port}"}})
        client = ApiClient.from_config(live)  # what `posd sales` uses: 127.0.0.1, pinned
        try:
            assert client.health()["status"] == "ok"
            assert client.list_sales() == []
        finally:
            client.close()  # a kept-alive connection would hold up the API's stop
    finally:
        daemon.stop()
        sim.stop()


def test_a_certificate_that_cannot_be_used_stops_the_start(tmp_path: Path,
                                                           pki: TestPki) -> None:
    bad = secret(tmp_path / "not-a-key.pem", "not a key")
    data = make_config(tmp_path, "https://127.0.0.1:1", pki)
    data["api"].update(listen="127.0.0.1:0", tls_cert_file=str(pki.server_cert_file),
                       tls_key_file=str(bad))
    daemon = Daemon.build(load(written(tmp_path, data)))
    try:
        with pytest.raises(ConfigError, match="cannot serve HTTPS"):
            daemon.start()
    finally:
        daemon.stop()
