"""Group decisions from peers' results: the mean and vote math, tie-breaks, quorum, bad input."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import AgentError
from agent.peers.aggregate import (
    GroupDecision,
    NoDecision,
    Result,
    aggregate,
    decision_id,
    parse_outcome,
    parse_result,
)

ACTIONS = ["cool", "heat", "off"]


def result(
    agent: str,
    action: str,
    scores: dict[str, float],
    *,
    value: float | None = None,
    confidence: float | None = None,
    policy: str = "climate",
    ts: float = 100.0,
) -> Result:
    return Result(
        agent=agent,
        policy=policy,
        ts=ts,
        window_end=ts,
        action=action,
        value=value,
        confidence=scores[action] if confidence is None else confidence,
        scores=scores,
    )


def s(cool: float, heat: float, off: float) -> dict[str, float]:
    return {"cool": cool, "heat": heat, "off": off}


def decided(outcome: GroupDecision | NoDecision) -> GroupDecision:
    assert isinstance(outcome, GroupDecision), outcome
    return outcome


# -- mean -----------------------------------------------------------------------------------

THREE = [
    result("a", "cool", s(0.6, 0.1, 0.3), value=22.0),
    result("b", "off", s(0.4, 0.1, 0.5), value=30.0),
    result("c", "cool", s(0.9, 0.05, 0.05), value=21.0),
]


def test_mean_is_the_average_of_the_score_vectors() -> None:
    d = decided(aggregate(THREE, "mean", 1, ACTIONS))
    assert d.scores == pytest.approx({"cool": 1.9 / 3, "heat": 0.25 / 3, "off": 0.85 / 3})
    assert d.action == "cool"
    assert d.value == 21.5  # a and c chose cool; b's value is not counted
    assert d.members == ("a", "b", "c")
    assert (d.method, d.quorum, d.policy, d.ts) == ("mean", 1, "climate", 100.0)


def test_weighted_mean_weighs_by_confidence() -> None:
    d = decided(aggregate(THREE, "mean", 1, ACTIONS, weighted=True))
    # weights 0.6, 0.5, 0.9 (each member's confidence), total 2.0
    assert d.scores == pytest.approx(
        {
            "cool": (0.36 + 0.2 + 0.81) / 2,
            "heat": (0.06 + 0.05 + 0.045) / 2,
            "off": (0.18 + 0.25 + 0.045) / 2,
        }
    )


def test_weighting_can_change_the_winner() -> None:
    results = [result("a", "cool", s(0.9, 0.0, 0.1))] + [
        result(x, "off", s(0.1, 0.4, 0.5)) for x in "bcd"
    ]
    plain = decided(aggregate(results, "mean", 1, ACTIONS))
    assert plain.scores == pytest.approx({"cool": 0.3, "heat": 0.3, "off": 0.4})
    assert plain.action == "off"
    weighted = decided(aggregate(results, "mean", 1, ACTIONS, weighted=True))
    # weights 0.9, 0.5, 0.5, 0.5: cool 0.96 / 2.4, heat 0.6 / 2.4, off 0.84 / 2.4
    assert weighted.scores == pytest.approx({"cool": 0.4, "heat": 0.25, "off": 0.35})
    assert weighted.action == "cool"


def test_weighted_with_zero_confidences_falls_back_to_equal_weights() -> None:
    results = [
        result("a", "cool", s(1, 0, 0), confidence=0.0),
        result("b", "heat", s(0, 1, 0), confidence=0.0),
    ]
    d = decided(aggregate(results, "mean", 1, ACTIONS, weighted=True))
    assert d.scores == {"cool": 0.5, "heat": 0.5, "off": 0.0}


def test_mean_tie_goes_to_the_first_action_of_the_policy() -> None:
    results = [result("a", "cool", s(1, 0, 0)), result("b", "heat", s(0, 1, 0))]
    assert decided(aggregate(results, "mean", 1, ["cool", "heat", "off"])).action == "cool"
    assert decided(aggregate(results, "mean", 1, ["heat", "cool", "off"])).action == "heat"


# -- vote -------------------------------------------------------------------------------------


def test_vote_takes_the_majority_and_reports_vote_shares() -> None:
    d = decided(aggregate(THREE, "vote", 2, ACTIONS))
    assert d.action == "cool"
    assert d.scores == {"cool": 2 / 3, "heat": 0.0, "off": 1 / 3}
    assert d.value == 21.5
    assert d.method == "vote"


def test_vote_tie_goes_to_the_larger_score_mass_then_the_policy_order() -> None:
    split = [result("a", "cool", s(0.6, 0.4, 0.0)), result("b", "heat", s(0.1, 0.9, 0.0))]
    # one vote each; heat's summed score 1.3 beats cool's 0.7, whatever the policy order
    assert decided(aggregate(split, "vote", 1, ["cool", "heat", "off"])).action == "heat"
    even = [result("a", "cool", s(0.5, 0.5, 0.0)), result("b", "heat", s(0.5, 0.5, 0.0))]
    assert decided(aggregate(even, "vote", 1, ["cool", "heat", "off"])).action == "cool"
    assert decided(aggregate(even, "vote", 1, ["heat", "cool", "off"])).action == "heat"


def test_weighted_vote_counts_confidence() -> None:
    results = [
        result("a", "cool", s(0.9, 0.1, 0.0)),
        result("b", "heat", s(0.3, 0.4, 0.3)),
        result("c", "heat", s(0.3, 0.4, 0.3)),
    ]
    assert decided(aggregate(results, "vote", 1, ACTIONS)).action == "heat"
    weighted = decided(aggregate(results, "vote", 1, ACTIONS, weighted=True))
    assert weighted.action == "cool"  # 0.9 against 0.4 + 0.4
    assert weighted.scores == pytest.approx({"cool": 0.9 / 1.7, "heat": 0.8 / 1.7, "off": 0.0})


# -- value, quorum, order ----------------------------------------------------------------------


def test_value_is_none_when_no_winner_gave_one() -> None:
    results = [result("a", "off", s(0, 0, 1)), result("b", "cool", s(0.2, 0, 0.8), value=20.0)]
    d = decided(aggregate(results, "mean", 1, ACTIONS))
    assert d.action == "off"
    assert d.value is None


def test_fewer_results_than_the_quorum_is_no_decision_with_a_reason() -> None:
    out = aggregate(THREE[:2], "mean", 3, ACTIONS)
    assert isinstance(out, NoDecision)
    assert out.reason == "2 result(s) by the deadline, quorum is 3"
    assert out.members == ("a", "b")
    payload = json.loads(out.to_payload())
    assert payload["action"] is None and payload["quorum"] == 3
    empty = aggregate([], "vote", 1, ACTIONS, policy="climate", ts=5.0)
    assert isinstance(empty, NoDecision) and empty.ts == 5.0 and empty.members == ()


def random_result(rng: random.Random, agent: str) -> Result:
    raw = [rng.random() for _ in ACTIONS]
    scores = {a: v / math.fsum(raw) for a, v in zip(ACTIONS, raw, strict=True)}
    action = rng.choice(ACTIONS)
    return result(agent, action, scores, value=rng.uniform(16, 28), ts=rng.uniform(0, 10))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 7), st.sampled_from(["mean", "vote"]), st.booleans())
def test_the_outcome_does_not_depend_on_arrival_order(
    seed: int, n: int, method: Any, weighted: bool
) -> None:
    rng = random.Random(seed)
    results = [random_result(rng, f"agent-{i}") for i in range(n)]
    first = aggregate(results, method, 1, ACTIONS, weighted=weighted)
    shuffled = results[:]
    rng.shuffle(shuffled)
    assert aggregate(shuffled, method, 1, ACTIONS, weighted=weighted) == first
    d = decided(first)
    assert math.fsum(d.scores.values()) == pytest.approx(1.0)
    assert d.scores[d.action] == max(d.scores.values())
    assert d.ts == max(r.window_end for r in results)


def test_aggregate_refuses_inconsistent_input() -> None:
    with pytest.raises(AgentError, match="one result per member"):
        aggregate([THREE[0], THREE[0]], "mean", 1, ACTIONS)
    with pytest.raises(AgentError, match="one policy"):
        aggregate([THREE[0], result("b", "cool", s(1, 0, 0), policy="light")], "mean", 1, ACTIONS)
    with pytest.raises(AgentError, match="scores over"):
        aggregate(THREE, "mean", 1, ["cool", "off"])
    with pytest.raises(AgentError, match="method"):
        aggregate(THREE, "median", 1, ACTIONS)  # type: ignore[arg-type]
    with pytest.raises(AgentError, match="no policy"):
        aggregate([], "mean", 1, ACTIONS)


# -- wire ------------------------------------------------------------------------------------

GOOD = {
    "agent": "pi-livingroom",
    "policy": "climate",
    "ts": 1764370000.5,
    "window_end": 1764370000.0,
    "action": "cool",
    "value": 22.0,
    "confidence": 0.83,
    "scores": {"cool": 0.83, "heat": 0.02, "off": 0.15},
    "model_sha256": "ab" * 32,
}


def encode(**changes: Any) -> bytes:
    data = {**GOOD, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not DROP}).encode()


DROP = object()


def test_parse_result_reads_spec_6() -> None:
    r = parse_result(encode())
    assert r == Result(
        "pi-livingroom",
        "climate",
        1764370000.5,
        1764370000.0,
        "cool",
        22.0,
        0.83,
        {"cool": 0.83, "heat": 0.02, "off": 0.15},
        "ab" * 32,
    )
    assert parse_result(encode(value=None, model_sha256=None, group="livingroom")).group == (
        "livingroom"
    )
    assert parse_result(encode(window_end=DROP)).window_end == 1764370000.5


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (encode().replace(b"0.83,", b"NaN,", 1), "not JSON"),
        (encode(scores={"cool": 0.9, "heat": 0.05, "off": 0.0}), "sum to 1"),
        (encode(scores={"cool": 1.2, "heat": -0.2, "off": 0.0}), "finite and >= 0"),
        (encode(scores={"cool": 0.83, "heat": "0.02", "off": 0.15}), "must be a number"),
        (encode(scores={}), "non-empty object"),
        (encode(scores=[0.83, 0.02, 0.15]), "non-empty object"),
        (encode(action="dance"), "not one of the scores"),
        (encode(confidence=1.5), r"\[0, 1\]"),
        (encode(confidence=DROP), "confidence must be a number"),
        (encode(agent=DROP), "agent must be a non-empty string"),
        (encode(agent="a/b"), "one topic level"),
        (encode(ts="now"), "ts must be a number"),
        (encode(ts=True), "ts must be a number"),
        (encode(ts=10**400), "finite"),
        (encode(value="22"), "value must be a number"),
        (encode(model_sha256=5), "model_sha256"),
    ],
)
def test_parse_result_refuses_malformed_results(payload: bytes, error: str) -> None:
    with pytest.raises(AgentError, match=error):
        parse_result(payload)


def test_decisions_round_trip_with_spec_6_fields() -> None:
    d = decided(aggregate(THREE, "mean", 2, ACTIONS))
    payload = json.loads(d.to_payload())
    assert {"policy", "ts", "action", "value", "scores", "members", "method", "quorum"} <= set(
        payload
    )
    assert parse_outcome(d.to_payload()) == d
    missed = aggregate(THREE[:1], "vote", 2, ACTIONS)
    assert parse_outcome(missed.to_payload()) == missed
    with pytest.raises(AgentError):
        parse_outcome(b'{"policy": "climate", "method": "median"}')


def test_decision_id_is_the_same_for_one_window_at_every_member() -> None:
    assert decision_id("g", "climate", 7) == decision_id("g", "climate", 7)
    assert (
        len(
            {
                decision_id("g", "climate", 7),
                decision_id("g", "climate", 8),
                decision_id("h", "climate", 7),
            }
        )
        == 3
    )
