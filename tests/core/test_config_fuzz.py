# SPDX-License-Identifier: MIT
"""Property-based fuzzing of the config loader: whatever a config file holds, ``config.load``
returns a Config or raises ConfigError (the CLI's exit 78 with a key path) -- never anything
else, which would be a traceback and a restart loop under systemd.

Three generators: any text; valid TOML whose keys are the model's own (and some that are
not) with values of every TOML type; and a valid shop config with a few keys changed.
Cases that escaped as other exceptions before config.py handled them: a path with a NUL
byte (ValueError from stat), nesting deep enough to exhaust tomllib's recursion
(RecursionError); both are kept as explicit examples."""

from __future__ import annotations

import copy
import json
import re
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from posd import config
from posd.channels import registry
from posd.core.errors import ConfigError

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, but not its surrogate pairs (\\ud83d…)
    for characters beyond the BMP, and TOML also wants DEL escaped."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _key(name: str) -> str:
    return name if _BARE.fullmatch(name) else _string(name)


def toml_value(value: Any) -> str:
    """One TOML value, of the TOML type that tomllib gives back as ``value``'s type."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(repr(value), repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    return _string(str(value))


def to_toml(doc: dict[str, Any]) -> str:
    """Top-level tables as [sections] (their sub-tables inline), other values first."""
    lines = [f"{_key(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for name, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"[{_key(name)}]")
            lines += [f"{_key(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _sections(model: type[BaseModel]) -> dict[str, list[str]]:
    """``{"store": ["id", "name", ...], "channels.wechat": [...], ...}`` from the models."""
    found: dict[str, list[str]] = {}
    for name, field in model.model_fields.items():
        kind = field.annotation
        candidates = [kind, *getattr(kind, "__args__", ())]
        sub = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)),
                   None)
        if sub is None:
            continue
        found[name] = list(sub.model_fields)
        for inner, keys in _sections(sub).items():
            found[f"{name}.{inner}"] = keys
    return found


SECTIONS = _sections(config.Config)
# [channels] has one table per registered channel, each its channel's own model.
SECTIONS["channels"] = list(registry.names())
for _name in registry.names():
    SECTIONS[f"channels.{_name}"] = list(registry.get(_name).config.model_fields)

scalars = st.one_of(
    st.text(max_size=30), st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(), st.booleans(), st.datetimes(), st.dates(), st.times(),
    st.sampled_from(["", "/", "\x00", "127.0.0.1:8637", "0.0.0.0:1", "[::]:80",
                     "http://example.com", "https://127.0.0.1", "hid", "serial", "console",
                     "none", "network", "usb", "x" * 5000, "../../etc/passwd"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=8)


@st.composite
def model_shaped(draw: st.DrawFn) -> dict[str, Any]:
    """Sections and keys the model knows (plus a few it does not), values of any type."""
    doc: dict[str, Any] = {}
    for section in draw(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=6)):
        keys = st.sampled_from(SECTIONS[section]) | st.text(min_size=1, max_size=8)
        table = draw(st.dictionaries(keys, values, max_size=5))
        where = doc
        for part in section.split("."):
            if not isinstance(where.get(part), dict):
                where[part] = {}
            where = where[part]
        where.update(table)
    return doc


@pytest.fixture(scope="module", name="shop")
def _shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A valid config and its files, in a directory shared by every example."""
    tmp = tmp_path_factory.mktemp("config-fuzz")
    for name in ("api-token", "wechat-api-key", "apiclient_key.pem"):
        (tmp / name).write_text("s" * 32)
        (tmp / name).chmod(0o600)
    (tmp / "apiclient_cert.pem").write_text("cert")
    return tmp, {
        "store": {"id": "S001", "name": "Shop", "terminal_id": "T01"},
        "database": {"path": str(tmp / "posd.db")},
        "api": {"listen": "127.0.0.1:8637", "token_file": str(tmp / "api-token")},
        "channels": {"wechat": {
            "appid": "wx1", "mch_id": "1", "api_key_file": str(tmp / "wechat-api-key"),
            "cert_file": str(tmp / "apiclient_cert.pem"),
            "key_file": str(tmp / "apiclient_key.pem")}},
        "scanner": {"kind": "none"},
        "printer": {"kind": "none"},
    }


def loads_or_refuses(path: Path, text: str) -> config.Config | None:
    """The property: a Config, or ConfigError (None). Anything else propagates and fails."""
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        return config.load(path)
    except ConfigError as err:
        assert str(err)  # a sentence for the person at the till
        return None


FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def test_the_base_config_is_valid(shop: tuple[Path, dict[str, Any]]) -> None:
    tmp, data = shop
    assert loads_or_refuses(tmp / "config.toml", to_toml(data)) is not None


@FUZZ
@given(text=st.text())
@example(text="a = " + "[" * 5000 + "]" * 5000)   # tomllib recurses: RecursionError
@example(text="[store]\nid = \"\\u0000\"")
@example(text="\ufeff[store]")
def test_any_text(shop: tuple[Path, dict[str, Any]], text: str) -> None:
    loads_or_refuses(shop[0] / "text.toml", text)


@FUZZ
@given(doc=model_shaped())
def test_any_values_under_the_models_keys(shop: tuple[Path, dict[str, Any]],
                                          doc: dict[str, Any]) -> None:
    loads_or_refuses(shop[0] / "shaped.toml", to_toml(doc))


@FUZZ
@given(changes=st.lists(st.tuples(st.sampled_from(sorted(SECTIONS)), st.data()),
                        min_size=1, max_size=3))
@example(changes=[])  # the base itself
def test_a_valid_config_with_a_few_keys_changed(
        shop: tuple[Path, dict[str, Any]], changes: list[tuple[str, Any]]) -> None:
    tmp, base = shop
    doc = copy.deepcopy(base)
    for section, data in changes:
        key = data.draw(st.sampled_from(SECTIONS[section]) | st.text(max_size=6))
        value = data.draw(values)
        table = doc
        for part in section.split("."):
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                break
        else:
            table[key] = value
    loads_or_refuses(tmp / "changed.toml", to_toml(doc))


@pytest.mark.parametrize("path", ["\x00", "/etc/posd/\x00key", "/" + "x" * 5000])
def test_paths_no_file_can_have_are_config_errors(shop: tuple[Path, dict[str, Any]],
                                                  path: str) -> None:
    tmp, base = shop
    doc = copy.deepcopy(base)
    doc["api"]["token_file"] = path
    with pytest.raises(ConfigError, match="api.token_file"):
        config.load(_written(tmp / "paths.toml", to_toml(doc)))


def _written(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
