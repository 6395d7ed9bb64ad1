"""Who may read and who may act: the token rules of the dashboard, as pure functions."""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path

from agent.config import WebSection, is_loopback
from agent.errors import ConfigError

log = logging.getLogger(__name__)
COOKIE = "edge_token"
HEADER = "x-edge-token"


def token_matches(given: str | None, expected: str) -> bool:
    """``given`` is the token, compared in constant time."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def may_read(loopback: bool, given: str | None, expected: str) -> bool:
    """On loopback anyone on this machine may read; elsewhere only with the token."""
    return loopback or token_matches(given, expected)


def may_write(given: str | None, expected: str) -> bool:
    """Acting (intents, health labels) always needs the token, on loopback too."""
    return token_matches(given, expected)


def load_token(web: WebSection, data_dir: Path) -> str:
    """The configured token, or on loopback without one a token made once and kept in
    ``data_dir/web.token`` (owner only) for the people on this machine."""
    if web.token_file is not None:
        try:
            token = web.token_file.expanduser().read_text().strip()
        except OSError as exc:
            raise ConfigError([f"web.token_file: cannot read {web.token_file}: {exc}"]) from None
        if len(token) < 16:
            raise ConfigError([f"web.token_file: {web.token_file} holds fewer than 16 "
                               "characters; a token that short can be guessed"])
        return token
    assert is_loopback(web.host), "config validation requires a token off loopback"
    path = data_dir / "web.token"
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    log.info("dashboard token written to %s", path)
    return token
