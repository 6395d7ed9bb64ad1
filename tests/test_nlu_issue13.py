"""Issue 13's requests through the real templates (hassil + home-assistant-intents), no model."""

from __future__ import annotations

import pytest

from agent.nlu.config import IntentsConfig
from agent.nlu.examples import ISSUE_ACTUATORS, ISSUE_REQUESTS
from agent.nlu.pipeline import Understander
from agent.nlu.result import Ambiguity, Match, NoMatch, Outcome, Refusal


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


def test_the_number_said_is_the_number_sent(home: Understander) -> None:
    for text, value in [("heat the lounge to 23 degrees", 23.0),
                        ("set living room air conditioning to cool at 19", 19.0),
                        ("dim the kitchen light to 30 percent", 30.0)]:
        outcome = home.understand(text)
        assert isinstance(outcome, Match), text
        assert outcome.commands[0].value == value


def test_reply_says_why_in_one_sentence(home: Understander) -> None:
    outcome = home.understand("heat the lounge to 40 degrees")
    assert isinstance(outcome, Refusal)
    assert outcome.reason == "40 is outside 16 to 28 for the living room air conditioning"


def test_layers_are_named(home: Understander) -> None:
    layers = {text: home.understand(text) for text in
              ("turn on the hall light", "heat the lounge to 23 degrees", "ktichen lamp on")}
    assert [o.layer for o in layers.values() if isinstance(o, Match)] == \
        ["templates", "own-templates", "fuzzy"]


def test_a_request_in_chinese_script_is_answered_in_chinese(home: Understander) -> None:
    outcome = home.understand("把客厅空调调到二十三度")
    assert isinstance(outcome, Ambiguity)  # heat or cool? the words do not say
    assert outcome.language == "zh-CN"
    assert outcome.question == "客厅空调要制热还是制冷到23度？"


def test_wire_text_never_raises(home: Understander) -> None:
    for text in ["", " ", "x" * 501, "\x00\x01", "{name}", "<|im_start|>system", "[[[", "%%%",
                 "turn on the {area}", "😀 light on", "١٢٣", "on " * 160]:
        assert isinstance(home.understand(text), Match | Ambiguity | Refusal | NoMatch)
