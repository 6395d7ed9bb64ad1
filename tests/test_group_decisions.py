"""Four real agents on one broker, each with its own key and one roster, decide as one group:
one decision and one command per window."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.broker import Mosquitto
from agent.config import read_yaml
from agent.policy.signing import generate_key_file, load_key, verify
from tests.conftest import EXAMPLE_CONFIG, AgentProcess, Collector, peer_identities, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.slow]

AGENTS = ["a1", "a2", "a3", "a4"]
DECISIONS = "edge/decisions/climate"
SET = "edge/actuators/livingroom-hvac/hvac/set"


def member_config(tmp_path: Path, port: int, agent_id: str, key: Path,
                  site: tuple[Path, dict[str, Path]]) -> Path:
    data = read_yaml(EXAMPLE_CONFIG.read_text())
    data["agent"].update(id=agent_id, data_dir=str(tmp_path / agent_id), status_interval="1s")
    data["mqtt"].update(port=port, reconnect={"min_delay": "1s", "max_delay": "2s"})
    data["security"].update(command_key_file=str(key), roster_file=str(site[0]),
                            identity_key_file=str(site[1][agent_id]))
    policy = data["policies"][0]
    policy.update(engine="rules", every="3s",
                  peers={"group": "livingroom", "method": "mean", "quorum": 3,
                         "deadline": "1s"},
                  safety={"min_interval": "1s", "min_dwell": "1s", "max_per_hour": 3600})
    data["interlocks"] = []
    path = tmp_path / f"{agent_id}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_group_of_four_decides_once_per_window_and_survives_its_leader(
        tmp_path: Path, broker: Mosquitto, agent_factory: Callable[[Path], AgentProcess],
        collector_factory: Callable[..., Collector]) -> None:
    key = tmp_path / "command.key"
    generate_key_file(key)
    watch = collector_factory(broker.port, "edge/agents/+/status", "edge/agents/+/results/#",
                              DECISIONS, SET)
    site = peer_identities(tmp_path / "site", AGENTS)
    agents = {a: agent_factory(member_config(tmp_path, broker.port, a, key, site))
              for a in AGENTS}
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
               for d in first)
    check_mean(watch, first[-1])

    agents["a1"].kill()  # the leader dies; its last will says offline
    heat()
    seen = len(watch.on(DECISIONS))
    wait_for(lambda: any(d["leader"] == "a2" for d in watch.on(DECISIONS)[seen:]), timeout=60,
             what="a2 taking over")
    wait_for(lambda: len(watch.on(DECISIONS)) >= seen + 2, timeout=30, what="more decisions")
    decisions = watch.on(DECISIONS)
    windows: dict[Any, set[str]] = defaultdict(set)
    for d in decisions:
        windows[d["window"]].add(d["leader"])
    assert all(len(leaders) == 1 for leaders in windows.values()), windows
    assert len(windows) == len(decisions)  # never two decisions for one window
    commands = watch.on(SET)
    assert commands
    by_id = {c["id"]: c for c in commands}
    assert len(by_id) == len(commands)  # every command once, under its own id
    assert all(verify(c, load_key(key)) for c in commands)
    assert {c["agent"] for c in commands} <= {"a1", "a2"}
    assert len(commands) <= len(decisions)  # at most one command per group decision
    assert all(d["signer"] == d["leader"] for d in decisions)  # signed by who published it


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
