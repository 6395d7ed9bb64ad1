"""The model-update key pair: `edge-agent keygen --update`, loading each half, signatures."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli import cli
from agent.config import load_config
from agent.errors import AgentError
from agent.service import updatekey
from tests.conftest import agent_config


def test_keygen_update_writes_a_private_key_for_the_operator_and_a_public_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "update.key"
    result = CliRunner().invoke(cli, ["keygen", "--update", str(path)])
    assert result.exit_code == 0, result.output
    assert "update.key.pub" in result.output and "security.update_public_key_file" in result.output
    assert path.stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE KEY" in path.read_bytes()
    assert b"PRIVATE" not in (tmp_path / "update.key.pub").read_bytes()
    private, public = (
        updatekey.load_private(path),
        updatekey.load_public(tmp_path / "update.key.pub"),
    )
    sig = updatekey.sign(private, b"manifest")
    assert updatekey.verify(public, b"manifest", sig)
    assert not updatekey.verify(public, b"manifest!", sig)
    assert not updatekey.verify(public, b"manifest", sig[:-2])
    assert not updatekey.verify(public, b"manifest", "zz" * 64)


def test_keygen_update_keeps_an_existing_key_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "update.key"
    updatekey.generate_key_pair(path)
    before = path.read_bytes()
    result = CliRunner().invoke(cli, ["keygen", "--update", str(path)])
    assert result.exit_code == 1 and "already exists" in result.output
    assert path.read_bytes() == before
    assert CliRunner().invoke(cli, ["keygen", "--update", "--force", str(path)]).exit_code == 0
    assert path.read_bytes() != before


def test_each_half_is_refused_where_the_other_belongs(tmp_path: Path) -> None:
    public = updatekey.generate_key_pair(tmp_path / "update.key")
    with pytest.raises(AgentError, match="private update key: it must stay with the operator"):
        updatekey.load_public(tmp_path / "update.key")
    with pytest.raises(AgentError, match="is a public key: sign with the private one"):
        updatekey.load_private(public)
    command_key = tmp_path / "command.key"
    command_key.write_text("ab" * 32)
    with pytest.raises(AgentError, match=f"{command_key} is not a public update key"):
        updatekey.load_public(command_key)
    with pytest.raises(AgentError, match="does not exist"):
        updatekey.load_public(tmp_path / "missing.pub")


def test_the_config_names_the_public_key(tmp_path: Path) -> None:
    public = updatekey.generate_key_pair(tmp_path / "update.key")
    cfg = load_config(agent_config(tmp_path, 1883, security__update_public_key_file=str(public)))
    assert cfg.security.update_public_key_file == public


def test_model_push_with_the_command_key_says_what_is_wrong(tmp_path: Path) -> None:
    command_key = tmp_path / "command.key"
    command_key.write_text("ab" * 32)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    cfg = agent_config(tmp_path, 1)
    result = CliRunner().invoke(
        cli, ["model", "push", str(model), "-c", str(cfg), "--key", str(command_key)]
    )
    assert result.exit_code == 1
    assert f"{command_key} is not an update key" in result.output
