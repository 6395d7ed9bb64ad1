"""The ``intents`` section: defaults for an existing config without it, bounds with their path."""

from __future__ import annotations

import pytest

from agent.config import parse_config
from agent.errors import ConfigError


def test_a_config_without_the_section_gets_the_defaults() -> None:
    intents = parse_config("agent: {id: a}\n").intents
    assert (intents.queue, intents.per_minute, intents.confirm_ttl) == (16, 20, 30.0)


def test_the_section_is_read() -> None:
    intents = parse_config("intents: {queue: 4, per_minute: 5, confirm_ttl: 10s}\n").intents
    assert (intents.queue, intents.per_minute, intents.confirm_ttl) == (4, 5, 10.0)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("intents: {queue: 0}", "intents.queue"),
        ("intents: {per_minute: -1}", "intents.per_minute"),
        ("intents: {confirm_ttl: 100ms}", "intents.confirm_ttl"),
        ("intents: {confirm_ttl: 1h}", "intents.confirm_ttl"),
        ("intents: {rate: 3}", "intents.rate: unknown key"),
    ],
)
def test_bad_values_are_errors_with_their_path(text: str, path: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text + "\n")
    assert any(e.startswith(path) for e in info.value.errors), info.value.errors
