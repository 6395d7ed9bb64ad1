"""Which actuators a request names (``Registry.candidates``): a whole name before a shared
word, the longest whole name first, and a partial match only when every other word is known."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config import load_config
from agent.policy.intents import Registry
from tests.intents_env import home_config

BACK: dict[str, Any] = {
    "name": "backyard",
    "every": "1h",
    "inputs": ["hall-1/motion"],
    "engine": "rules",
    "actuators": [
        {"device": "back-door", "actuator": "lock", "name": "back door lock",
         "aliases": ["back door"], "actions": ["lock", "unlock"]},
        {"device": "back-light", "actuator": "light", "name": "back door light",
         "actions": ["on", "off"]},
    ],
}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    tmp = tmp_path_factory.mktemp("intents")
    path = home_config(tmp, 1883)
    data = yaml.safe_load(path.read_text())
    data["policies"].append(BACK)
    path.write_text(yaml.safe_dump(data))
    return Registry(load_config(path))


def devices(registry: Registry, text: str) -> list[str]:
    return sorted(t.actuator.device for t in registry.candidates(text))


def test_every_name_of_an_actuator_finds_it(registry: Registry) -> None:
    for text in ("lock the front door lock", "lock the front door", "lock the door lock",
                 "lock front-door", "lock front door lock"):
        assert devices(registry, text) == ["front-door"], text
    assert devices(registry, "turn on the SPRINKLERS") == ["garden-valve"]
    assert devices(registry, "set the lounge climate to 21") == ["livingroom-hvac"]


def test_the_longest_whole_name_wins(registry: Registry) -> None:
    # "back door" names the lock, "back door light" the light: the longer one is meant
    assert devices(registry, "switch on the back door light") == ["back-light"]
    assert devices(registry, "unlock the back door") == ["back-door"]


def test_a_shared_word_alone_finds_every_actuator_that_has_it(registry: Registry) -> None:
    assert devices(registry, "lock the door") == ["back-door", "back-light", "front-door"]
    assert devices(registry, "open the garden") == ["garden-valve"]


def test_an_unknown_word_stops_a_partial_match(registry: Registry) -> None:
    # "side" is in no name: the side door is not the front or back door through "door"
    assert devices(registry, "unlock the side door") == []
    assert devices(registry, "open the kitchen window") == []
    assert devices(registry, "make me a sandwich") == []


def test_fillers_numbers_and_action_words_alone_name_nothing(registry: Registry) -> None:
    assert devices(registry, "please turn it on") == []
    assert devices(registry, "set it to 21") == []
    assert devices(registry, "") == []


def test_each_actuator_once_even_if_several_policies_list_it(tmp_path: Path) -> None:
    path = home_config(tmp_path, 1883)
    data = yaml.safe_load(path.read_text())
    twin = dict(data["policies"][0], name="climate-twin")
    data["policies"].append(twin)
    path.write_text(yaml.safe_dump(data))
    registry = Registry(load_config(path))
    assert [t.actuator.device for t in registry.targets].count("livingroom-hvac") == 1
    assert devices(registry, "cool the living room ac") == ["livingroom-hvac"]
