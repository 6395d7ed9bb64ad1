"""Robust averaging and bounded rounds: one member cannot drag the group's scores or the
federated weights, and a round that cannot be averaged fails once, never every tick."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agent.config import parse_config
from agent.errors import AgentError, ConfigError
from agent.peers import fedavg as fa
from agent.peers.aggregate import GroupDecision, Result, aggregate
from agent.peers.coordinator import Coordinator, FlSettings
from agent.peers.robust import Robust
from agent.peers.rounds import MAX_ABS, UpdateMessage

ACTIONS = ["cool", "heat", "off"]


def test_median_and_trimmed_mean_per_coordinate() -> None:
    rows = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0], [1000.0, -1e5]])
    np.testing.assert_array_equal(Robust("median").combine(rows), [3.0, 20.0])
    np.testing.assert_array_equal(Robust("trimmed-mean", 0.2).combine(rows), [3.0, 20.0])
    np.testing.assert_array_equal(Robust("trimmed-mean", 0.0).combine(rows),
                                  rows.mean(axis=0))
    np.testing.assert_array_equal(Robust("trimmed-mean", 0.4).combine(rows[:2]), [1.5, 15.0])
    with pytest.raises(AgentError):
        Robust("trimmed-mean", 0.5)


def result(agent: str, action: str, scores: list[float]) -> Result:
    named = dict(zip(ACTIONS, scores, strict=True))
    return Result(agent, "climate", 1.0, 1.0, action, None, named[action], named)


def test_robust_scores_do_not_follow_a_minority_with_extreme_scores() -> None:
    honest = [result(a, "cool", [0.6, 0.1, 0.3]) for a in ("a", "b", "c")]
    extreme = [result(a, "heat", [0.0, 1.0, 0.0]) for a in ("x", "y")]
    plain = aggregate(honest + extreme, "mean", 1, ACTIONS)
    assert isinstance(plain, GroupDecision) and plain.action == "heat"  # 0.46 > 0.36
    for robust in (Robust("median"), Robust("trimmed-mean", 0.4)):
        out = aggregate(honest + extreme, "mean", 1, ACTIONS, robust=robust)
        assert isinstance(out, GroupDecision) and out.action == "cool", robust
        assert sum(out.scores.values()) == pytest.approx(1.0)


def coordinator(**kw: object) -> Coordinator:
    settings = FlSettings(rounds=2, epochs=1, lr=0.5, deadline=10.0, **kw)  # type: ignore[arg-type]
    return Coordinator("m0", "g", "v", ("vector",), 1, settings, session="s", size=4)


def update(agent: str, msg_round: int, vector: list[float], count: int | None = 10,
           masked: bool = False, data: str | None = None) -> bytes:
    return UpdateMessage("g", "v", "s", msg_round, 0, "train", agent, count, masked,
                         data or fa.encode_floats(np.array(vector))).to_payload()


def test_a_robust_federation_ignores_counts_and_outliers() -> None:
    c = coordinator(robust=Robust("median"), max_count=100)
    msg = c.start(0.0, ["m0", "m1", "m2"], np.zeros(4))
    assert msg.max_count == 100 and json.loads(msg.to_payload())["max_count"] == 100
    assert c.on_update(update("m0", 1, [1.0, 1.0, 1.0, 1.0]), 0.0) is None
    assert c.on_update(update("m1", 1, [2.0, 2.0, 2.0, 2.0]), 0.0) is None
    assert c.on_update(update("m2", 1, [9e5, -9e5, 9e5, 9e5], count=100), 0.0) is None
    nxt = c.tick(0.0, ["m0", "m1", "m2"])
    assert nxt is not None
    # each coordinate stays between the honest members' values, whatever m2 sent and claimed
    np.testing.assert_array_equal(nxt.global_weights(), [2.0, 1.0, 2.0, 2.0])


def test_counts_above_the_round_and_oversized_values_are_refused() -> None:
    c = coordinator(max_count=100)
    c.start(0.0, ["m0", "m1"], np.zeros(4))
    assert "above the round's 100" in (c.on_update(update("m1", 1, [0.0] * 4, 101), 0.0) or "")
    with pytest.raises(AgentError, match="larger than"):
        c.on_update(update("m1", 1, [2 * MAX_ABS, 0.0, 0.0, 0.0]), 0.0)
    with pytest.raises(AgentError, match="not a number of examples"):
        c.on_update(update("m1", 1, [0.0] * 4, 2**1100), 0.0)
    assert c.updates == {}


def test_a_round_that_cannot_be_averaged_fails_once_per_attempt_then_stops() -> None:
    settings = FlSettings(rounds=2, epochs=1, lr=0.5, deadline=10.0, secure=True)
    c = Coordinator("m0", "g", "climate", ("cool", "heat"), 2, settings, session="s")
    members = ["m0", "m1", "m2"]
    msg = c.start(0.0, members)
    size = 2 * 2 + 1
    for attempt in range(3):
        for m in members:  # masked sums that do not add up to a plausible count
            garbage = fa.encode_u64(np.full(size, 2**63 + 7, dtype=np.uint64))
            payload = UpdateMessage("g", "climate", "s", 0, msg.attempt, "moments", m, None,
                                    True, garbage).to_payload()
            assert c.on_update(payload, 0.0) is None
        nxt = c.tick(float(attempt), members)
        if attempt < 2:
            assert nxt is not None and nxt.attempt == attempt + 1
            msg = nxt
    assert nxt is None and c.done and c.failed is not None
    for later in range(10):  # over: nothing more, no exception, every second
        assert c.tick(10.0 + later, members) is None


def test_robust_averaging_and_secure_aggregation_exclude_each_other() -> None:
    text = """
security: {command_key_file: /tmp/k}
policies:
  - name: climate
    inputs: [r/temperature]
    targets: {r/temperature: [20, 24]}
    actuators: [{device: d, actuator: hvac, actions: [cool, heat, off]}]
    peers:
      group: g
      robust: {method: median}
      federated: {secure: true, min_members: 3}
"""
    with pytest.raises(ConfigError, match=r"policies\[0\]\.peers: robust averaging needs"):
        parse_config(text)
    ok = parse_config(text.replace("secure: true, ", ""))
    assert ok.policies[0].peers is not None and ok.policies[0].peers.robust is not None
    assert ok.policies[0].peers.robust.method == "median"
    with pytest.raises(ConfigError, match="trim"):
        parse_config(text.replace("median}", "trimmed-mean, trim: 0.5}"))
