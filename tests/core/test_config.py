# SPDX-License-Identifier: MIT
import tomllib
from pathlib import Path

import pytest

from posd import config
from posd.channels import registry
from posd.cli import main
from posd.core.errors import ConfigError

ROOT = Path(__file__).parents[2]


def write_valid(tmp_path: Path, extra: str = "", wechat: str = "") -> Path:
    for name in ("api-token", "wx-key", "client.key"):
        (tmp_path / name).write_text("x" * 32)
        (tmp_path / name).chmod(0o600)
    (tmp_path / "client.pem").write_text("cert")
    path = tmp_path / "config.toml"
    path.write_text(f"""
[store]
id = "S001"
name = "Shop"
terminal_id = "T01"
[database]
path = "{tmp_path}/posd.db"
[api]
token_file = "{tmp_path}/api-token"
[channels.wechat]
base_url = "http://127.0.0.1:9"
appid = "wx1"
mch_id = "10000100"
api_key_file = "{tmp_path}/wx-key"
cert_file = "{tmp_path}/client.pem"
key_file = "{tmp_path}/client.key"
{wechat}
{extra}
""")
    return path


def test_example_config_is_valid_and_documents_every_section() -> None:
    data = tomllib.loads((ROOT / "config.example.toml").read_text(encoding="utf-8"))
    loaded = config.Config.model_validate(data)
    assert loaded.store.id == "S001"
    assert set(data) == set(config.Config.model_fields) - {"codes", "scanners"}


def test_every_model_key_appears_in_the_example() -> None:
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    channels = [registry.get(name).config for name in registry.names()]
    for section in (config.StoreConfig, config.PaymentConfig, config.ApiConfig, *channels,
                    config.ScannerConfig, config.PrinterConfig, config.HqConfig,
                    config.DatabaseConfig, config.ReceiptConfig, config.ReportConfig,
                    config.LogConfig, config.ReconcileConfig):
        for key in section.model_fields:
            assert f"{key} =" in text, f"{section.__name__}.{key} is not documented"


def test_load_valid(tmp_path: Path) -> None:
    loaded = config.load(write_valid(tmp_path))
    assert loaded.channels.enabled == ("wechat",)
    assert loaded.api.port == 8637


def test_misspelt_key_names_its_path(tmp_path: Path) -> None:
    path = write_valid(tmp_path, extra='[scanner]\nkind = "console"\ndevcie = "x"')
    with pytest.raises(ConfigError, match=r"scanner\.devcie: unknown key"):
        config.load(path)


@pytest.mark.parametrize(
    ("wechat", "match"),
    [
        ('sign_type = "SHA1"', "channels.wechat.sign_type"),
        ('connect_timeout_s = -1', "channels.wechat.connect_timeout_s"),
    ],
)
def test_bad_values_name_their_path(tmp_path: Path, wechat: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config.load(write_valid(tmp_path, wechat=wechat))


def test_plain_http_only_for_loopback(tmp_path: Path) -> None:
    path = write_valid(tmp_path)
    path.write_text(path.read_text().replace("http://127.0.0.1:9", "http://10.0.0.1:9"))
    with pytest.raises(ConfigError, match="only for 127.0.0.1"):
        config.load(path)


def test_secret_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = write_valid(tmp_path)
    (tmp_path / "wx-key").chmod(0o644)
    with pytest.raises(ConfigError, match=r"channels\.wechat\.api_key_file: .*chmod 600"):
        config.load(path)


def test_missing_secret_file_is_refused(tmp_path: Path) -> None:
    path = write_valid(tmp_path)
    (tmp_path / "api-token").unlink()
    with pytest.raises(ConfigError, match=r"api\.token_file"):
        config.load(path)


def test_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[store\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(path)


def test_config_check_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_valid(tmp_path)
    assert main(["config", "check", "-c", str(good)]) == 0
    assert main(["config", "check", "-c", str(tmp_path / "nope.toml")]) == 78
    assert "cannot read" in capsys.readouterr().err


def test_find_path_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSD_CONFIG", "/x/env.toml")
    assert config.find_path("/x/arg.toml") == Path("/x/arg.toml")
    assert config.find_path(None) == Path("/x/env.toml")
    monkeypatch.delenv("POSD_CONFIG")
    assert config.find_path(None) == Path("/etc/posd/config.toml")
