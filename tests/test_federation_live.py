"""Federated learning between four real agents on a real broker, with secure aggregation.

The rounds go over MQTT between ``edge-agent run`` processes; the test reads the wire: every
averaged round's weights must be exactly the secure average of the masked updates the listed
members sent (the masks cancel in the sum), the leader is killed mid-federation and the next
one finishes it, and the members report what they answered and adopted.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.broker import Mosquitto
from agent.peers import fedavg as fa
from agent.policy.signing import generate_key_file
from tests.conftest import AgentProcess, Collector, member_config, peer_identities, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.slow]

AGENTS = ["f1", "f2", "f3", "f4"]
ROUND = "edge/groups/house/fl/climate/round"
ROUNDS = 3


def federated_member(tmp_path: Path, port: int, agent_id: str, key: Path,
                     site: tuple[Path, dict[str, Path]] | None = None) -> Path:
    return member_config(
        tmp_path, port, agent_id, key,
        roster=None if site is None else site[0],  # every member signs; the roster lists all
        identity=None if site is None else site[1][agent_id],
        engine="embed", every="10m", min_accuracy=0.5, peers={
            "group": "house", "method": "mean", "quorum": 1, "deadline": "1s",
            "federated": {"rounds": ROUNDS, "epochs": 30, "deadline": "4m", "start_after": "1s",
                          "min_members": 4, "examples": 30, "heldout": 20, "secure": True}})


def test_four_agents_federate_securely_and_survive_their_coordinator(
        tmp_path: Path, broker: Mosquitto, agent_factory: Callable[[Path], AgentProcess],
        collector_factory: Callable[..., Collector]) -> None:
    key = tmp_path / "command.key"
    generate_key_file(key)
    watch = collector_factory(broker.port, "edge/agents/+/status", "edge/groups/house/fl/#")
    site = peer_identities(tmp_path / "site", AGENTS)
    agents = {a: agent_factory(federated_member(tmp_path, broker.port, a, key, site))
              for a in AGENTS}

    def rounds() -> list[dict[str, Any]]:
        return watch.on(ROUND)

    def failed(what: str) -> str:
        return what + "\n" + "\n".join(f"--- {a}\n{p.log()[-3000:]}" for a, p in agents.items())

    try:
        wait_for(lambda: any(r["round"] >= 2 for r in rounds()), timeout=600,
                 what="round 2 of the federation")
    except AssertionError as exc:
        raise AssertionError(failed(str(exc))) from None
    assert rounds()[0]["coordinator"] == "f1" and rounds()[0]["stage"] == "moments"
    assert rounds()[0]["members"] == AGENTS
    agents["f1"].kill()  # the coordinator dies mid-federation; its last will says offline
    try:
        wait_for(lambda: any(r["stage"] == "final" for r in rounds()), timeout=600,
                 what="the final round")
    except AssertionError as exc:
        raise AssertionError(failed(str(exc))) from None

    messages = rounds()
    assert len({r["session"] for r in messages}) == 1
    final = next(r for r in messages if r["stage"] == "final")
    assert final["coordinator"] == "f2" and final["round"] == ROUNDS + 1
    assert set(final["members"]) == {"f2", "f3", "f4"}
    checked = check_secure_averages(watch, messages)
    assert {c for c, _ in checked} == {"f1", "f2"}  # rounds averaged by both coordinators

    def reported() -> dict[str, dict[str, Any]]:
        out = {}
        for a in AGENTS[1:]:
            statuses = watch.on(f"edge/agents/{a}/status")
            if statuses and "federation" in statuses[-1]:
                out[a] = statuses[-1]["federation"]["climate"]
        return out

    wait_for(lambda: all(s.get("stage") == "final" for s in reported().values())
             and len(reported()) == 3, timeout=30, what="members reporting the final round")
    for agent, status in reported().items():
        assert status["ready"] and status["session"] == final["session"]
        assert status["answered"] >= ROUNDS + 1, (agent, status)  # moments + every train round
        assert status["adopted"] >= 1, (agent, status)  # no worse on its own held-out cases
        policy = watch.on(f"edge/agents/{agent}/status")[-1]["policies"]["climate"]
        assert policy["engine"] == "embed" and policy["source"].startswith("federated"), policy
        assert (tmp_path / agent / "heads").is_dir()  # kept for the next start
    for p in agents.values():
        assert "Traceback" not in p.log()
        assert "ignoring a peer message on edge/groups" not in p.log()  # all were believed
    assert all(r["signer"] == r["coordinator"] for r in messages)


def check_secure_averages(
        watch: Collector, messages: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """Every round whose next round carries new weights: those weights are the secure average
    of the masked updates of exactly the members listed. Returns (coordinator, round) checked."""
    checked = []
    for prev, nxt in itertools.pairwise(messages):
        if prev["stage"] != "train" or nxt["round"] != prev["round"] + 1:
            continue  # a moments round, or a round asked again (attempt + 1)
        updates = [u for a in prev["members"]
                   for u in watch.on(f"edge/groups/house/fl/climate/update/{a}")
                   if (u["round"], u["attempt"]) == (prev["round"], prev["attempt"])]
        assert sorted(u["agent"] for u in updates) == sorted(prev["members"])
        assert all(u["masked"] and u["count"] is None for u in updates)
        size = (prev["dim"] + 1) * len(prev["classes"])
        total = fa.sum_masked([fa.decode_u64(u["data"], size + 1) for u in updates])
        average, count = fa.secure_average(total)
        assert count > 0
        weights = fa.decode_floats(nxt["weights"], size)
        np.testing.assert_allclose(weights, average.astype(np.float32), rtol=0, atol=1e-6)
        # one masked update alone says nothing: it is far from any plausible weight vector
        alone = fa.from_fixed(fa.decode_u64(updates[0]["data"], size + 1))
        assert np.abs(alone).max() > 1e6
        checked.append((prev["coordinator"], prev["round"]))
    assert checked
    return checked


def test_a_bad_round_message_is_refused_and_reported_nowhere_else(
        tmp_path: Path, broker: Mosquitto, agent_factory: Callable[[Path], AgentProcess],
        collector_factory: Callable[..., Collector]) -> None:
    """Garbage on the federation topics is logged and ignored; the agent keeps running (no
    roster here: what is checked without keys)."""
    key = tmp_path / "command.key"
    generate_key_file(key)
    watch = collector_factory(broker.port, "edge/agents/+/status")
    agent = agent_factory(federated_member(tmp_path, broker.port, "f1", key))
    wait_for(lambda: any(s.get("federation") for s in watch.on("edge/agents/f1/status")),
             timeout=120, what="f1 online with its federation status")
    for payload in (b"{", json.dumps({"round": "x"}), json.dumps([1, 2])):
        watch.publish(ROUND, payload)
    watch.publish("edge/groups/house/fl/climate/key/f9", json.dumps({"agent": "f9",
                                                                     "public": "1"}))
    # queued behind the embedding of its own examples, then refused one by one
    def refused() -> int:
        status = watch.on("edge/agents/f1/status")[-1]
        return int(status["peers"]["refused"].get("federation", 0))

    # two are not JSON objects: refused and counted on arrival; the others on the federation
    # thread, queued behind the embedding of its own examples
    wait_for(lambda: refused() >= 2 and "federated learning: fl round: " in agent.log()
             and "public key out of range" in agent.log(), timeout=180,
             what="the bad messages refused")
    assert agent.alive()
    assert "Traceback" not in agent.log()
