"""Issue 13's requests through the real templates (hassil + home-assistant-intents), no model."""

from __future__ import annotations

import pytest

from agent.nlu.check import check_answer
from agent.nlu.config import IntentsConfig, ValueSpec
from agent.nlu.examples import ISSUE_ACTUATORS, ISSUE_REQUESTS
from agent.nlu.normalise import normalise
from agent.nlu.pipeline import Understander
from agent.nlu.result import Ambiguity, Match, NoMatch, Outcome, Refusal
from agent.nlu.values import value_actions


@pytest.fixture(scope="module")
def home() -> Understander:
    return Understander(IntentsConfig(languages=["en", "de", "zh"]), ISSUE_ACTUATORS)


def label(outcome: Outcome) -> str:
    if isinstance(outcome, Match):
        return ";".join(c.text for c in outcome.commands)
    return {Refusal: "refuse", Ambiguity: "ask", NoMatch: "model"}[type(outcome)]


@pytest.mark.parametrize(("text", "want"), ISSUE_REQUESTS)
def test_issue_request(home: Understander, text: str, want: str) -> None:
    assert label(home.understand(text)) == want


def test_negation_refused_in_every_language(home: Understander) -> None:
    for text in ("don't unlock the back door", "Schließe die Hintertür nicht auf", "别打开后门"):
        outcome = home.understand(text)
        assert isinstance(outcome, Refusal), text


def test_two_close_names_are_asked_not_guessed() -> None:
    acts = [{"device": "kitchen-light", "actuator": "light", "name": "kitchen light",
             "actions": ["on", "off"]},
            {"device": "kitchen-fan", "actuator": "fan", "name": "kitchen fan",
             "actions": ["on", "off"]}]
    u = Understander(IntentsConfig(languages=["en"]), acts)
    outcome = u.understand("turn on the kitchen fon")
    assert label(outcome) in ("ask", "kitchen-fan/fan=on")
    outcome = u.understand("turn on the kitchen")
    assert not (isinstance(outcome, Match) and len(outcome.commands) == 1 and
                outcome.commands[0].device == "kitchen-light")


def test_normalise_numbers_units_apostrophes() -> None:
    assert normalise("it’s too warm, cool it to twenty-one °C!", "en").text == \
        "it is too warm cool it to 21 degrees"
    assert normalise("Heizung auf 21,5 °C", "de").numbers == (21.5,)
    assert normalise("把空调调到二十三度", "zh").text == "把空调调到23度"
    assert normalise("make it two degrees warmer", "en").delta == 2.0


def test_model_answer_must_agree_with_the_words(home: Understander) -> None:
    request = home.understand("could the lounge maybe go cool at 20")
    assert isinstance(request, NoMatch)
    assert isinstance(check_answer(request, "livingroom-hvac", "hvac", "heat", 20.0), Refusal)
    assert isinstance(check_answer(request, "livingroom-hvac", "hvac", "cool", 16.0), Refusal)
    assert isinstance(check_answer(request, "front-door", "lock", "unlock", None), Refusal)
    assert isinstance(check_answer(request, "livingroom-hvac", "hvac", "cool", 20.0), Match)


def test_values_belong_to_actions() -> None:
    assert value_actions(["on", "off", "brightness"], None) == ["brightness"]
    assert value_actions(["cool", "heat", "off"], None) == ["cool", "heat"]
    assert value_actions(["on", "off"], None) == ["on"]  # legacy dimmable light
    with pytest.raises(ValueError, match="none of the actions"):
        value_actions(["lock", "unlock"], None)
    with pytest.raises(ValueError, match="not among the actions"):
        ValueSpec(min=0, max=100, actions=["dim"]).for_actions(["on", "off"])
    with pytest.raises(ValueError, match="greater than max"):
        ValueSpec(min=10, max=0)
