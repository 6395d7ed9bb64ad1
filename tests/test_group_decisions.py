"""Four real agents on one broker, each with its own key and one roster, decide as one group:
one decision and one command per window, a leader's duplicate refused by the actuator."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.broker import Mosquitto
from agent.peers.aggregate import decision_id
from agent.policy.signing import generate_key_file, load_key
from firmware_sim.actuators import Actuator, ActuatorSpec
from tests.conftest import AgentProcess, Collector, member_config, peer_identities, wait_for
from tests.helpers import Partition

pytestmark = [pytest.mark.broker, pytest.mark.slow]

AGENTS = ["a1", "a2", "a3", "a4"]
DECISIONS = "edge/decisions/climate"
SET = "edge/actuators/livingroom-hvac/hvac/set"


def group_member(tmp_path: Path, port: int, agent_id: str, key: Path,
                 site: tuple[Path, dict[str, Path]]) -> Path:
    return member_config(
        tmp_path, port, agent_id, key, roster=site[0], identity=site[1][agent_id],
        engine="rules", every="3s",
        peers={"group": "livingroom", "method": "mean", "quorum": 3, "deadline": "1s"},
        safety={"min_interval": "1s", "min_dwell": "1s", "max_per_hour": 3600})


class LiveActuator:
    """The simulated firmware of the group's HVAC (firmware_sim), on the broker: it checks every
    command's signature, time and nonce as a real one does, and counts why it refused."""

    def __init__(self, port: int, key: bytes) -> None:
        self.firmware = Actuator(ActuatorSpec("livingroom-hvac", "hvac"), key)
        self.handled: list[tuple[dict[str, Any], str | None]] = []
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_connect = lambda c, *a: c.subscribe(SET, qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        reason = self.firmware.handle(bytes(msg.payload))
        self.handled.append((json.loads(msg.payload), reason))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_group_of_four_decides_once_per_window_and_survives_its_leader(
        tmp_path: Path, broker: Mosquitto, agent_factory: Callable[[Path], AgentProcess],
        collector_factory: Callable[..., Collector]) -> None:
    """a2 reaches the broker over a network that loses the group's decisions, so when the
    leader a1 dies right after deciding, a2 takes over believing that window undecided and
    sends its command again: under the same id and nonce, which the actuator refuses."""
    key = tmp_path / "command.key"
    generate_key_file(key)
    watch = collector_factory(broker.port, "edge/agents/+/status", "edge/agents/+/results/#",
                              DECISIONS, SET)
    actuator = LiveActuator(broker.port, load_key(key))
    lossy = Partition(broker.port, lose=frozenset({DECISIONS}))
    site = peer_identities(tmp_path / "site", AGENTS)
    agents = {a: agent_factory(group_member(tmp_path, lossy.port if a == "a2" else broker.port,
                                             a, key, site))
              for a in AGENTS}
    try:
        wait_for(lambda: {s["groups"] == ["livingroom"] and s["state"] == "online" and a
                          for a in AGENTS for s in watch.on(f"edge/agents/{a}/status")[-1:]}
                 >= set(AGENTS), timeout=90, what="four agents online")

        def heat() -> None:
            for i in range(3):
                watch.publish("edge/sensors/livingroom-1/temperature",
                              json.dumps({"value": 27.5, "seq": int(time.time() * 1000) + i}))

        heat()
        wait_for(lambda: len(watch.on(DECISIONS)) >= 3, timeout=60, what="three group decisions")
        first = watch.on(DECISIONS)
        assert all(d["leader"] == "a1" and d["action"] == "cool" and d["method"] == "mean"
                   for d in first), [(d["leader"], d["action"], d["method"]) for d in first]
        check_mean(watch, first[-1])
        assert lossy.lost  # a2 has seen none of them

        seen = len(watch.on(DECISIONS))
        wait_for(lambda: len(watch.on(DECISIONS)) > seen, timeout=30, what="a1's next decision")
        agents["a1"].kill()  # right after deciding: its last will says offline
        last_of_a1 = watch.on(DECISIONS)[-1]["window"]
        heat()
        wait_for(lambda: len([d for d in watch.on(DECISIONS) if d["leader"] == "a2"]) >= 3,
                 timeout=60, what="a2 leading")
        time.sleep(1.0)  # the actuator's answers to the last commands
    finally:
        actuator.close()
        lossy.close()

    decisions = watch.on(DECISIONS)
    windows: dict[int, list[str]] = defaultdict(list)
    for d in decisions:
        windows[d["window"]].append(d["leader"])
    # the take-over published again what a2 never saw settled: a1's last window, and the one
    # before it if that was still inside a2's grace (one window)
    again = sorted(w for w, leaders in windows.items() if len(leaders) > 1)
    assert last_of_a1 in again and set(again) <= {last_of_a1 - 1, last_of_a1}, windows
    assert all(windows[w] == ["a1", "a2"] for w in again), windows
    assert all(d["signer"] == d["leader"] for d in decisions)  # signed by who published it

    # every command carries its window's decision id, the one every member derives alike:
    # a1 and a2, two processes, sent the same id and nonce for the windows both published
    commands = watch.on(SET)
    ids = {decision_id("livingroom", "climate", w): w for w in windows}
    assert commands and all(c["id"] in ids for c in commands)
    by_window: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for c in commands:
        by_window[ids[c["id"]]].append(c)
    for w, sent in by_window.items():
        assert len({(c["id"], c["nonce"]) for c in sent}) == 1, sent
        assert len(sent) == 1 or w in again, sent
        assert [c["agent"] for c in sent] == windows[w][: len(sent)]
    duplicates = sum(len(sent) - 1 for sent in by_window.values())
    assert duplicates >= 1  # a2 did send a decision's command again

    # the actuator: one command per window, every duplicate refused as a replay
    applied = [ids[c["id"]] for c, why in actuator.handled if why is None]
    refused = [(ids[c["id"]], why) for c, why in actuator.handled if why is not None]
    assert sorted(applied) == sorted(by_window)  # each window's command once
    assert sorted(refused) == sorted(
        (w, "replayed") for w, sent in by_window.items() for _ in sent[1:])


def check_mean(watch: Collector, decision: dict[str, Any]) -> None:
    """The decision's scores are the mean of its members' results for that window."""
    every = 3.0
    results = [r for a in decision["members"]
               for r in watch.on(f"edge/agents/{a}/results/climate")
               if int(r["window_end"] // every + 1e-9) == decision["window"]]
    assert {r["agent"] for r in results} == set(decision["members"])
    assert len(decision["members"]) >= 3
    for action, score in decision["scores"].items():
        expected = sum(r["scores"][action] for r in results) / len(results)
        assert score == pytest.approx(expected, abs=1e-9)
