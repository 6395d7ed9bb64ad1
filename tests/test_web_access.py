"""The dashboard's token rules: who may read, who may act, what the config accepts."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.config import WebSection, is_loopback
from agent.errors import ConfigError
from agent.web.access import load_token, may_read, may_write, token_matches

TOKEN = "0123456789abcdef-secret"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "LOCALHOST"])
def test_loopback_is_exactly_these(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["127.0.0.2", "0.0.0.0", "::", "192.168.1.5", "pi.local", ""])
def test_anything_else_is_not_loopback(host: str) -> None:
    assert not is_loopback(host)


def test_token_compared_whole() -> None:
    assert token_matches(TOKEN, TOKEN)
    assert not token_matches(TOKEN[:-1], TOKEN)
    assert not token_matches(TOKEN + "x", TOKEN)
    assert not token_matches("", TOKEN)
    assert not token_matches(None, TOKEN)
    assert not token_matches("", "")


def test_loopback_reads_without_token_but_never_acts() -> None:
    assert may_read(True, None, TOKEN)
    assert not may_write(None, TOKEN)
    assert not may_write("wrong", TOKEN)
    assert may_write(TOKEN, TOKEN)


def test_off_loopback_no_token_no_data() -> None:
    assert not may_read(False, None, TOKEN)
    assert not may_read(False, "wrong", TOKEN)
    assert may_read(False, TOKEN, TOKEN)


def test_config_refuses_non_loopback_without_token() -> None:
    with pytest.raises(ValidationError, match="not loopback"):
        WebSection(host="0.0.0.0")
    with pytest.raises(ValidationError, match="not loopback"):
        WebSection(host="127.0.0.2")
    assert WebSection(host="0.0.0.0", token_file=Path("/etc/edge-agent/web.token"))
    assert WebSection().host == "127.0.0.1"


def test_check_config_names_the_path(tmp_path: Path) -> None:
    from agent.config import load_config

    path = tmp_path / "a.yaml"
    path.write_text("agent: {data_dir: /tmp/x}\nweb: {host: 0.0.0.0, port: 8080}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert any(line.startswith("web") and "token_file" in line for line in exc.value.errors)


def test_loopback_token_is_made_once_and_private(tmp_path: Path) -> None:
    first = load_token(WebSection(), tmp_path)
    assert len(first) >= 16
    assert (tmp_path / "web.token").stat().st_mode & 0o077 == 0
    assert load_token(WebSection(), tmp_path) == first


def test_configured_token_read_and_short_one_refused(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_text(TOKEN + "\n")
    assert load_token(WebSection(token_file=good), tmp_path) == TOKEN
    short = tmp_path / "short"
    short.write_text("abc")
    with pytest.raises(ConfigError, match="fewer than 16"):
        load_token(WebSection(token_file=short), tmp_path)
