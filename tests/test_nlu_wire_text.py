"""Any text from the wire: understood, asked about, refused or handed on; never raises, and a
negated command never comes out as that command (property tests on the real templates)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.nlu.config import IntentsConfig
from agent.nlu.examples import ISSUE_ACTUATORS, ISSUE_REQUESTS
from agent.nlu.pipeline import Understander
from agent.nlu.result import Ambiguity, Match, NoMatch, Refusal

HOME = Understander(IntentsConfig(languages=["en", "de", "zh"]), ISSUE_ACTUATORS)
COMMANDS = [text for text, want in ISSUE_REQUESTS if "=" in want and text.isascii()]
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.text(max_size=200))
def test_any_text_is_answered(text: str) -> None:
    assert isinstance(HOME.understand(text), Match | Ambiguity | Refusal | NoMatch)


@SETTINGS
@given(st.sampled_from(COMMANDS), st.sampled_from(["don't ", "do not ", "never ", "please don't ",
                                                   "Don’t "]))
def test_negated_command_is_never_sent(command: str, prefix: str) -> None:
    assert not isinstance(HOME.understand(prefix + command), Match)
