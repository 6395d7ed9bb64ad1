"""Typos in names: one entity stands out -> it; two within the margin -> ask, never guess."""

from __future__ import annotations

from agent.nlu.config import IntentsConfig
from agent.nlu.entities import entities_from
from agent.nlu.fuzzy import closest
from agent.nlu.pipeline import Understander
from agent.nlu.result import Ambiguity, Match

LIGHT_AND_FAN = [
    {"device": "kitchen-light", "actuator": "light", "name": "kitchen light",
     "actions": ["on", "off"]},
    {"device": "kitchen-fan", "actuator": "fan", "name": "kitchen fan", "actions": ["on", "off"]},
    {"device": "hall-light", "actuator": "light", "name": "hall light", "actions": ["on", "off"]},
]


def test_one_typo_finds_the_entity() -> None:
    u = Understander(IntentsConfig(languages=["en"]), LIGHT_AND_FAN)
    outcome = u.understand("turn on the ktichen light")
    assert isinstance(outcome, Match) and outcome.layer == "fuzzy"
    assert outcome.commands[0].device == "kitchen-light"


def test_two_close_names_are_asked_about() -> None:
    entities = entities_from(LIGHT_AND_FAN)
    close = closest("kitchen fight", entities, min_score=80, margin=6)
    assert {e.name for e in close} == {"kitchen light"}
    close = closest("kitchen fgt", entities, min_score=80, margin=6)  # 83.3 and 81.8
    assert {e.name for e in close} == {"kitchen light", "kitchen fan"}
    u = Understander(IntentsConfig(languages=["en"]), LIGHT_AND_FAN)
    outcome = u.understand("turn on the kitchen fgt")
    assert isinstance(outcome, Ambiguity)
    assert outcome.question == "did you mean the kitchen fan or the kitchen light?"


def test_a_name_shared_by_two_actuators_is_asked_about() -> None:
    twins = [dict(a, aliases=["kitchen"]) for a in LIGHT_AND_FAN[:2]]
    outcome = Understander(IntentsConfig(languages=["en"]), twins).understand("kitchen off")
    assert isinstance(outcome, Ambiguity)
    assert set(outcome.candidates) == {"kitchen light", "kitchen fan"}


def test_far_names_are_not_guessed() -> None:
    entities = entities_from(LIGHT_AND_FAN)
    assert closest("garage door", entities, min_score=80, margin=6) == []
