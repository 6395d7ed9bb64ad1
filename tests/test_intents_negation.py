"""Attack 1 of issue 12: "do not unlock the front door" must never unlock it.

Every negated request is refused with its reason before the model is asked anything, whatever
the order of the words; the broker test shows no command leaves the agent for any of them while
a plain request still works."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agent.broker import Mosquitto
from agent.config import parse_config
from agent.policy.intents import Registry, resolve
from agent.words import negation
from tests.conftest import AgentProcess, Collector
from tests.helpers import ROOT
from tests.intents_env import (
    LOCK,
    REPLY,
    SET,
    STATUS,
    VALVE,
    ask,
    home_config,
    reply,
    start,
    warm_up,
)

NEGATED = [
    "do not unlock the front door",
    "never open the garden valve",
    "don't open the sprinklers",
    "no, don't unlock it",
    "stop, do not open the garden valve",
    "Do NOT unlock the front door",
    "the front door: do not unlock",
    "unlock the front door? no",
    "unlock the front door - not",
    "never, ever unlock the front door",
    "I don’t want you to unlock the front door",  # a typographic apostrophe
    "dont open the sprinkler",
    "you shouldn't open the garden water valve",
    "open the garden valve? never",
    "please do not turn off the living room ac",
]
PLAIN = [
    "unlock the front door",
    "open the garden valve",
    "turn off the kitchen light",
    "turn on the lights now",
    "lock the front door at night",
    "switch the fountain on",
    "shut the front window",
]


def registry() -> Registry:
    return Registry(parse_config((ROOT / "config" / "home.example.yaml").read_text()))


def never_called(system: str, user: str, grammar: str) -> str:
    raise AssertionError("a negated request reached the model")


@pytest.mark.parametrize("text", NEGATED)
def test_a_negated_request_is_refused_before_the_model(text: str) -> None:
    intent = resolve(text, registry(), never_called)
    assert not intent.ok and intent.action is None
    assert intent.error is not None and "negation" in intent.error


@pytest.mark.parametrize("text", PLAIN)
def test_plain_requests_carry_no_negation(text: str) -> None:
    assert negation(text) is None


@pytest.mark.broker
def test_negated_intents_on_a_real_broker_send_nothing(
    tmp_path: Path,
    broker: Mosquitto,
    agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector],
) -> None:
    watch = collector_factory(broker.port, STATUS, REPLY, SET)
    start(agent_factory, home_config(tmp_path, broker.port), watch)
    # the plain request first: once it has its command the model is loaded, so the
    # negated ones below would reach it (and act) if they were not refused before
    assert warm_up(watch)["ok"] is True
    for i, text in enumerate(NEGATED):
        ask(watch, f"neg-{i}", text)
    for i, text in enumerate(NEGATED):
        answer = reply(watch, f"neg-{i}")
        assert answer["ok"] is False and answer["command"] is None, text
        error = answer["error"]
        assert "negation" in error or "says not to" in error, (text, error)
    ask(watch, "end", "open the garage")  # answered after all the others
    reply(watch, "end")
    assert watch.on(LOCK) == [] and watch.on(VALVE) == []
    assert [m["action"] for m in watch.on("edge/actuators/livingroom-hvac/hvac/set")] == ["off"]
