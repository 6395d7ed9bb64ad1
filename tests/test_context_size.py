"""The running agent's model context: its longest prompt fits, and no more than that is held."""

from __future__ import annotations

from agent.cli.base import EXAMPLE_HOME, load
from agent.inference.native import count_tokens
from agent.policy.intents import MAX_TEXT, Registry, system_prompt
from agent.service.contextsize import FLOOR, REPLY, run_context
from tests.helpers import bundled


def test_the_context_holds_the_longest_intent_and_no_more_than_model_context() -> None:
    cfg = load(str(EXAMPLE_HOME))
    model = bundled().path
    context = run_context(cfg, model)
    intent = count_tokens(model, [system_prompt(list(Registry(cfg).targets))])
    assert intent + MAX_TEXT + REPLY <= context  # a request of MAX_TEXT characters still fits
    assert FLOOR <= context < cfg.model.context  # 896 for this configuration, not 2048


def test_model_context_stays_the_upper_bound() -> None:
    cfg = load(str(EXAMPLE_HOME))
    small = cfg.model_copy(update={"model": cfg.model.model_copy(update={"context": 256})})
    assert run_context(small, bundled().path) == 256
