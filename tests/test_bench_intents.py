"""bench intents: Home Assistant's test cases map to commands; the adversarial set sends nothing."""

from __future__ import annotations

import json

from agent.bench.intents import (
    ADVERSARIAL,
    DATA,
    expected,
    fixture_actuators,
    measure,
)
from agent.nlu.config import IntentsConfig
from agent.nlu.examples import ISSUE_ACTUATORS
from agent.nlu.pipeline import Understander


def test_held_out_cases_map_to_commands() -> None:
    data = json.loads(DATA.read_text(encoding="utf-8"))
    for lang in ("en", "de", "zh-CN"):
        actuators = fixture_actuators(data[lang]["entities"])
        wanted = [w for c in data[lang]["cases"] if (w := expected(c, actuators))]
        assert len(wanted) >= 20, lang
        assert all("=" in w for w in wanted)


def test_adversarial_requests_send_no_command() -> None:
    home = Understander(IntentsConfig(languages=["en", "de", "zh"]), ISSUE_ACTUATORS)
    row = measure("(c)", home, [(t, "refuse") for t in ADVERSARIAL])
    assert row.n == len(ADVERSARIAL)
    assert row.wrong == 0
