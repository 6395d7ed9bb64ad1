"""Results carry the health of their inputs, and a group decision leaves out the members whose
inputs are faulty (issue 15, item 4).

A result is untrusted input: its health field can only leave its own sender out. A forged
"ok" weighs what any result weighed before, a claim about other members' inputs drops no one
but the sender, and a malformed health refuses the whole result. On a real broker, three
agents decide as one group; the one whose thermometer falls silent is left out of the
decisions while it is faulty."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.broker import Mosquitto
from agent.config import read_yaml
from agent.errors import AgentError
from agent.peers.aggregate import (
    GroupDecision,
    NoDecision,
    Result,
    aggregate,
    parse_outcome,
    parse_result,
)
from agent.peers.robust import Robust
from tests.conftest import AgentProcess, Collector, member_config, peer_identities, wait_for

ACTIONS = ["cool", "heat", "off"]
COOL = {"cool": 0.9, "heat": 0.05, "off": 0.05}
HEAT = {"cool": 0.0, "heat": 1.0, "off": 0.0}


def result(agent: str, scores: dict[str, float], health: dict[str, str] | None = None) -> Result:
    action = max(scores, key=lambda a: scores[a])
    return Result(agent, "climate", 100.0, 100.0, action, None, scores[action], scores,
                  health=health or {})


def wire(agent: str, **extra: Any) -> bytes:
    body = {"agent": agent, "policy": "climate", "ts": 100.0, "window_end": 100.0,
            "action": "cool", "value": 22.0, "confidence": 0.9, "scores": COOL,
            "model_sha256": None, **extra}
    return json.dumps(body).encode()


def test_a_member_with_a_faulty_input_is_left_out_and_the_quorum_counts_the_others() -> None:
    results = [result("a1", COOL, {"l-1/temperature": "ok"}),
               result("a2", COOL, {"l-1/temperature": "suspect"}),
               result("a3", HEAT, {"l-2/temperature": "faulty", "l-2/humidity": "ok"})]
    out = aggregate(results, "vote", 2, ACTIONS)
    assert isinstance(out, GroupDecision)
    assert out.members == ("a1", "a2") and out.left_out == ("a3",)
    assert out.scores == {"cool": 1.0, "heat": 0.0, "off": 0.0}
    assert out.to_dict()["left_out"] == ["a3"]
    assert parse_outcome(out.to_payload()).left_out == ("a3",)
    short = aggregate(results, "mean", 3, ACTIONS)
    assert isinstance(short, NoDecision) and short.left_out == ("a3",)
    assert short.reason == ("2 result(s) by the deadline, quorum is 3 "
                            "(1 more left out: their inputs are faulty)")


def test_without_health_nothing_changes_and_the_decision_has_no_new_field() -> None:
    results = [result("a1", COOL), result("a2", HEAT)]
    out = aggregate(results, "mean", 2, ACTIONS)
    assert isinstance(out, GroupDecision) and out.members == ("a1", "a2")
    assert "left_out" not in out.to_dict()
    assert parse_result(wire("a1")).health == {}


def test_the_health_field_is_read_strictly() -> None:
    health = {"livingroom-1/temperature": "faulty"}
    assert parse_result(wire("a1", health=health)).faulty
    bad: list[object] = [
        ["faulty"], {"l-1/temperature": "broken"}, {"l-1/temperature": 1},
        {f"d-{i}/t": "ok" for i in range(65)}, {"x" * 201: "ok"}, "faulty",
    ]
    for value in bad:
        with pytest.raises(AgentError, match="result: health"):
            parse_result(wire("a1", health=value))


@settings(max_examples=200, deadline=None)
@given(
    honest=st.lists(st.sampled_from(["ok", "suspect", "faulty"]), min_size=2, max_size=6),
    claim=st.dictionaries(st.sampled_from(["l-1/temperature", "a1-input", "a2-input", "x/y"]),
                          st.sampled_from(["ok", "suspect", "faulty"]), max_size=4),
    method=st.sampled_from(["mean", "vote"]),
    quorum=st.integers(1, 4),
)
def test_a_forged_health_never_gives_the_attacker_more_than_leaving_out_honest_members(
        honest: list[str], claim: dict[str, str], method: str, quorum: int) -> None:
    """Whatever the attacker writes in its health, the outcome is the one computed as if the
    honestly faulty members had sent nothing and the attacker had sent no health at all (or
    nothing, when it says faulty): its claim cannot drop, or outweigh, anyone else."""
    members = [result(f"h{i}", COOL, {f"h{i}/temperature": s}) for i, s in enumerate(honest)]
    forged = result("zz", HEAT, claim)
    got = aggregate([*members, forged], method, quorum, ACTIONS,  # type: ignore[arg-type]
                    robust=Robust())
    kept = [m for m in members if not m.faulty] + ([] if forged.faulty else [result("zz", HEAT)])
    want = aggregate(kept, method, quorum, ACTIONS, policy="climate",  # type: ignore[arg-type]
                     ts=100.0, robust=Robust())
    assert got.members == want.members
    assert set(got.left_out) <= {m.agent for m in members if m.faulty} | {"zz"}
    assert (got.action, getattr(got, "scores", None)) == (want.action,
                                                          getattr(want, "scores", None))


# -- three real agents on a broker -------------------------------------------------------------

EVERY = 2.0
DECISIONS = "edge/decisions/climate"


@pytest.mark.broker
@pytest.mark.slow
def test_the_member_whose_thermometer_falls_silent_is_left_out(
        tmp_path: Path, broker: Mosquitto, agent_factory: Callable[[Path], AgentProcess],
        collector_factory: Callable[..., Collector]) -> None:
    agents = ["a1", "a2", "a3"]
    roster, keys = peer_identities(tmp_path / "site", agents)
    watch = collector_factory(broker.port, DECISIONS, "edge/agents/+/results/climate",
                              "edge/agents/+/status")
    for agent in agents:
        own = "livingroom-2" if agent == "a3" else "livingroom-1"
        path = member_config(
            tmp_path, broker.port, agent, tmp_path / "command.key", roster=roster,
            identity=keys[agent], model=False, engine="rules", every=f"{EVERY:g}s",
            inputs=[f"{own}/temperature"], targets={f"{own}/temperature": [20, 24]},
            peers={"group": "livingroom", "method": "mean", "quorum": 2, "deadline": "1s"},
            safety={"min_interval": "1s", "min_dwell": "1s", "max_per_hour": 3600})
        data = read_yaml(path.read_text())
        # a3 keeps deciding on its faulty input (no pause): the group must leave it out
        data["diagnosis"] = {"pause": False, "check_every": "500ms"}
        path.write_text(json.dumps(data))
        agent_factory(path)
    wait_for(lambda: {s.get("state") for a in agents
                      for s in watch.on(f"edge/agents/{a}/status")[-1:]} == {"online"}
             and len({a for a in agents if watch.on(f"edge/agents/{a}/status")}) == 3,
             60, "three members online")
    for i in range(30):  # both thermometers every 0.2 s: a usual interval for each
        watch.publish("edge/sensors/livingroom-1/temperature", json.dumps({"value": 27.5,
                                                                            "seq": i}))
        watch.publish("edge/sensors/livingroom-2/temperature", json.dumps({"value": 15.0,
                                                                            "seq": i}))
        time.sleep(0.2)
    for i in range(30, 200):  # then livingroom-2 falls silent; livingroom-1 goes on
        watch.publish("edge/sensors/livingroom-1/temperature", json.dumps({"value": 27.5,
                                                                            "seq": i}))
        time.sleep(0.2)
        if any(d.get("left_out") == ["a3"] for d in watch.on(DECISIONS)):
            break
    results = watch.on("edge/agents/a3/results/climate")
    assert any(r.get("health") == {"livingroom-2/temperature": "faulty"} for r in results)
    assert any(r.get("health") == {"livingroom-2/temperature": "ok"} for r in results)
    decisions = watch.on(DECISIONS)
    left = [d for d in decisions if d.get("left_out") == ["a3"]]
    assert left, decisions
    assert all(d["members"] == ["a1", "a2"] and d["action"] == "cool" for d in left)
    assert any(d["members"] == ["a1", "a2", "a3"] for d in decisions)  # before the fault
