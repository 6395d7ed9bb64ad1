"""Home Assistant's templates for the configured languages only, with the registry as entities."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agent.nlu.config import IntentsConfig
from agent.nlu.entities import area_of, entity_from
from agent.nlu.examples import ISSUE_ACTUATORS
from agent.nlu.templates import Templates


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates(["en", "de"], [entity_from(a) for a in ISSUE_ACTUATORS])


def test_only_the_configured_languages_are_loaded(templates: Templates) -> None:
    assert sorted(templates.intents) == ["de", "en"]
    assert set(templates.intents["en"].intents) >= {"HassTurnOn", "HassLightSet",
                                                    "EdgeClimateMode"}
    assert "HassStartTimer" not in templates.intents["en"].intents  # unsupported: not loaded


def test_names_aliases_and_areas_are_entities(templates: Templates) -> None:
    hits = templates.match("turn off the kitchen lamp", "en")
    assert {"name": "kitchen-light/light"}.items() <= hits[0].slots.items() or any(
        h.slots.get("name") == "kitchen-light/light" for h in hits)
    hits = templates.match("schalte das licht in der kitchen aus", "de")
    assert any(h.slots.get("area") == "kitchen" for h in hits)


def test_lock_and_valve_map_onto_turn_on_and_off(templates: Templates) -> None:
    assert templates.match("lock the front door", "en")[0].intent == "HassTurnOn"
    assert templates.match("unlock the back door", "en")[0].intent == "HassTurnOff"
    assert templates.match("close the garden valve", "en")[0].intent == "HassTurnOff"


def test_areas_from_names() -> None:
    assert area_of("kitchen light") == "kitchen"
    assert area_of("living room air conditioning") == "living room"
    assert area_of("厨房灯") == "厨房"
    assert area_of("front door") is None


def test_unknown_language_is_a_clear_config_error() -> None:
    with pytest.raises(ValidationError, match="no sentence templates for \\['klingon'\\]"):
        IntentsConfig(languages=["klingon"])
    assert IntentsConfig(languages=["zh", "en"]).languages == ["zh-CN", "en"]
    with pytest.raises(ValidationError):
        IntentsConfig.model_validate({"languages": ["en"], "fuzzy": 3})  # unknown key
