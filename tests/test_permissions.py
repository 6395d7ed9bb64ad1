"""Start-up warnings for keys and the database open to other users."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.service.permissions import check_permissions, paths_to_check, readable_by


def secret(tmp_path: Path, name: str, mode: int) -> Path:
    path = tmp_path / name
    path.write_text("s3cret")
    path.chmod(mode)
    return path


def test_private_files_give_no_warning(tmp_path: Path) -> None:
    paths = [secret(tmp_path, "command.key", 0o600), secret(tmp_path, "edge-agent.db", 0o600)]
    assert check_permissions(paths, trusted_gids=set()) == []


def test_a_key_readable_by_everyone(tmp_path: Path) -> None:
    key = secret(tmp_path, "command.key", 0o644)
    [warning] = check_permissions([key], trusted_gids={os.getegid()})
    assert warning == f"{key} is readable by every user (mode 0644); fix: chmod 640 {key}"


def test_a_database_readable_by_a_shared_group(tmp_path: Path) -> None:
    db = secret(tmp_path, "edge-agent.db", 0o640)
    [warning] = check_permissions([db], trusted_gids=set())
    assert warning.startswith(f"{db} is readable by group ")
    assert warning.endswith(f"(mode 0640); fix: chmod 600 {db}")


def test_the_agents_own_group_may_read(tmp_path: Path) -> None:
    key = secret(tmp_path, "command.key", 0o640)  # root:edge-agent 0640, say
    assert check_permissions([key], trusted_gids={key.stat().st_gid}) == []


def test_writable_by_others_is_reported_too(tmp_path: Path) -> None:
    key = secret(tmp_path, "tls.key", 0o602)
    [warning] = check_permissions([key], trusted_gids=set())
    assert "is writable by every user (mode 0602)" in warning
    both = secret(tmp_path, "passwd", 0o666)
    [warning] = check_permissions([both], trusted_gids=set())
    assert "is readable and writable by group" in warning and "and every user" in warning


def test_missing_files_are_skipped(tmp_path: Path) -> None:
    assert check_permissions([tmp_path / "nothing-yet.db"]) == []


def test_paths_to_check_names_secrets_and_database_files(tmp_path: Path) -> None:
    cfg = parse_config(
        f"agent: {{data_dir: {tmp_path}}}\n"
        f"mqtt: {{password_file: {tmp_path}/pw, tls: {{ca_file: {tmp_path}/ca.crt, "
        f"cert_file: {tmp_path}/c.crt, key_file: {tmp_path}/c.key}}}}\n"
        f"security: {{command_key_file: {tmp_path}/command.key}}\n"
    )
    assert paths_to_check(cfg) == [
        tmp_path / "command.key",
        tmp_path / "c.key",
        tmp_path / "pw",
        tmp_path / "edge-agent.db",
        tmp_path / "edge-agent.db-wal",
        tmp_path / "edge-agent.db-shm",
    ]


def test_default_trust_accepts_only_a_private_group(tmp_path: Path) -> None:
    open_key = secret(tmp_path, "k", 0o604)
    assert len(check_permissions([open_key])) == 1  # others can read, whatever our group


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to look at another user's rights")
def test_readable_by(tmp_path: Path) -> None:
    path = secret(tmp_path, "agent.yaml", 0o600)
    assert readable_by(path, "root")
    assert not readable_by(path, "nobody")
    path.chmod(0o604)
    assert readable_by(path, "nobody")
    assert not readable_by(path, "no-such-user-here")
