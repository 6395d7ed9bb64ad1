"""The decision engines' arithmetic: the rules engine every policy starts on, the embed head,
the llm engine's scoring, and the accuracy the fitness gate computes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.config import parse_config
from agent.policy.digest import zone
from agent.policy.engines import (
    Answer,
    EmbedEngine,
    LlmEngine,
    RulesEngine,
    Situation,
    accuracy,
    llm_system_prompt,
    normalise,
)
from agent.policy.head import SoftmaxHead
from tests.conftest import EXAMPLE_CONFIG

POLICY = parse_config(EXAMPLE_CONFIG.read_text()).policies[0]
BAND = (20.0, 24.0)


def at(value: float) -> Situation:
    return Situation(f"temperature {value}", value, BAND, zone(value, BAND))


@pytest.mark.parametrize(("value", "action"), [
    (27.5, "cool"), (24.01, "cool"), (16.0, "heat"), (19.99, "heat"), (22.0, "off"),
    (20.0, "off"), (24.0, "off"),
])
def test_rules_act_outside_the_band_and_stop_inside(value: float, action: str) -> None:
    answer = RulesEngine(POLICY).decide(at(value))
    assert answer.action == action
    assert math.fsum(answer.scores.values()) == pytest.approx(1.0)
    assert answer.scores[action] > 0.5  # half the mass goes to the band's own answer
    assert set(answer.scores) == {"cool", "heat", "off"}


def test_rules_keep_cooling_until_a_quarter_band_inside_the_edge() -> None:
    engine = RulesEngine(POLICY)
    assert engine.decide(at(25.0)).action == "cool"
    assert engine.decide(at(23.5)).action == "cool"  # 24 - 0.25 * 4 = 23: still cooling
    assert engine.decide(at(22.9)).action == "off"
    assert RulesEngine(POLICY).decide(at(23.5)).action == "off"  # no history: inside is off


def test_rules_keep_heating_until_a_quarter_band_inside_the_edge() -> None:
    engine = RulesEngine(POLICY)
    assert engine.decide(at(18.0)).action == "heat"
    assert engine.decide(at(20.5)).action == "heat"
    assert engine.decide(at(21.1)).action == "off"
    engine.reset()
    assert engine.decide(at(20.5)).action == "off"


def test_rules_scores_are_soft_near_the_edge_for_peers_to_average() -> None:
    near, far = RulesEngine(POLICY).decide(at(24.05)), RulesEngine(POLICY).decide(at(30.0))
    assert near.action == far.action == "cool"
    assert near.scores["cool"] < far.scores["cool"]
    assert near.scores["off"] > far.scores["off"]


def test_normalise_and_the_tie_break() -> None:
    assert normalise({"a": 1.0, "b": 3.0}) == {"a": 0.25, "b": 0.75}
    assert normalise({"a": 0.0, "b": 0.0}) == {"a": 0.5, "b": 0.5}
    assert normalise({"a": math.inf, "b": 1.0}) == {"a": 0.5, "b": 0.5}
    assert normalise({"a": math.nan, "b": 1.0}) == {"a": 0.5, "b": 0.5}
    assert Answer({"cool": 0.4, "heat": 0.4, "off": 0.2}, "").action == "cool"  # first listed
    assert Answer({"cool": 0.2, "heat": 0.4, "off": 0.4}, "").action == "heat"


def test_embed_engine_puts_the_embedding_through_the_head() -> None:
    rng = np.random.default_rng(7)
    centres = {"cool": rng.normal(size=8), "heat": rng.normal(size=8), "off": rng.normal(size=8)}
    x = np.array([centres[c] + rng.normal(scale=0.05, size=8) for c in centres for _ in range(20)])
    labels = [c for c in centres for _ in range(20)]
    head = SoftmaxHead.fit(x, labels, ["cool", "heat", "off"])
    vectors = {"hot": centres["cool"], "cold": centres["heat"], "fine": centres["off"]}
    engine = EmbedEngine(head, lambda text, fixed="": vectors[text].astype(np.float32))
    for digest, action in [("hot", "cool"), ("cold", "heat"), ("fine", "off")]:
        answer = engine.decide(Situation(digest, 22.0, BAND, "inside"))
        assert answer.action == action
        assert math.fsum(answer.scores.values()) == pytest.approx(1.0)


def test_llm_engine_turns_log_likelihoods_into_probabilities() -> None:
    asked: list[tuple[str, str, list[str]]] = []

    def score(prefix: str, suffix: str, options: list[str]) -> list[float]:
        asked.append((prefix, suffix, list(options)))
        return [math.log(0.6), math.log(0.3), math.log(0.1)]

    engine = LlmEngine(POLICY, lambda system, user: (system + "|", user + "|"), score)  # type: ignore[arg-type]
    answer = engine.decide(at(27.0))
    assert answer.scores == pytest.approx({"cool": 0.6, "heat": 0.3, "off": 0.1})
    assert asked[0][2] == ["cool", "heat", "off"]
    assert asked[0][0].startswith(llm_system_prompt(POLICY))
    assert "answer with one word: cool, heat, off" in llm_system_prompt(POLICY)
    assert answer.prompt_hash is not None and len(answer.prompt_hash) == 16


def test_accuracy_judges_each_case_on_its_own() -> None:
    cases = [(at(25.0), "cool"), (at(23.5), "off")]  # hysteresis would say cool for the second
    assert accuracy(RulesEngine(POLICY), cases) == 1.0
    assert accuracy(RulesEngine(POLICY), [(at(25.0), "heat")]) == 0.0
    assert accuracy(RulesEngine(POLICY), []) == 0.0
