"""The model's answer to a request no template matched must agree with the request's words."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.nlu.check import check_answer
from agent.nlu.config import IntentsConfig
from agent.nlu.examples import ISSUE_ACTUATORS
from agent.nlu.pipeline import Understander
from agent.nlu.result import Match, NoMatch, Refusal


@pytest.fixture(scope="module")
def home() -> Understander:
    return Understander(IntentsConfig(languages=["en", "de", "zh"]), ISSUE_ACTUATORS)


def request(home: Understander, text: str) -> NoMatch:
    outcome = home.understand(text)
    assert isinstance(outcome, NoMatch), outcome
    return outcome


def test_the_number_said_is_the_value(home: Understander) -> None:
    req = request(home, "could the lounge maybe go cool at 20")
    assert isinstance(check_answer(req, "livingroom-hvac", "hvac", "cool", 20.0), Match)
    refused = check_answer(req, "livingroom-hvac", "hvac", "cool", 16.0)
    assert isinstance(refused, Refusal) and "not a number the request says" in refused.reason
    assert isinstance(check_answer(req, "livingroom-hvac", "hvac", "cool", None), Refusal)


def test_a_polarity_said_cannot_be_flipped(home: Understander) -> None:
    req = request(home, "could the lounge maybe go cool at 20")
    refused = check_answer(req, "livingroom-hvac", "hvac", "heat", 20.0)
    assert isinstance(refused, Refusal) and "the answer heat" in refused.reason


def test_nothing_outside_the_candidates(home: Understander) -> None:
    req = request(home, "could the lounge maybe go cool at 20")
    refused = check_answer(req, "front-door", "lock", "unlock", None)
    assert isinstance(refused, Refusal) and "front-door/lock" in refused.reason
    assert isinstance(home.understand("turn on the garage light"), Refusal)  # none to ask


def test_out_of_range_is_refused_even_when_said(home: Understander) -> None:
    before = home.understand("could the lounge maybe go cool at 40")
    assert isinstance(before, Refusal) and "outside 16 to 28" in before.reason  # no model call
    req = replace(request(home, "could the lounge maybe go cool at 20"), numbers=(40.0,))
    refused = check_answer(req, "livingroom-hvac", "hvac", "cool", 40.0)
    assert isinstance(refused, Refusal) and "outside 16 to 28" in refused.reason
