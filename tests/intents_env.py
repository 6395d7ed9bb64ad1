"""An agent with the example's climate policy plus a front-door lock and a garden valve, for the
intent tests on a real broker."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from agent.config import read_yaml
from tests.conftest import AgentProcess, Collector, agent_config, start_agent, wait_for

STATUS = "edge/agents/test-agent/status"
INTENTS = "edge/agents/test-agent/intents"
REPLY = f"{INTENTS}/reply"
SET = "edge/actuators/+/+/set"
LOCK = "edge/actuators/front-door/lock/set"
VALVE = "edge/actuators/garden-valve/valve/set"

ENTRANCE: dict[str, Any] = {
    "name": "entrance",
    "every": "1h",
    "inputs": ["hall-1/motion"],
    "engine": "rules",
    "actuators": [
        {
            "device": "front-door",
            "actuator": "lock",
            "name": "front door lock",
            "aliases": ["front door", "door lock"],
            "actions": ["lock", "unlock"],
        }
    ],
}
GARDEN: dict[str, Any] = {
    "name": "garden",
    "every": "1h",
    "inputs": ["garden-1/humidity"],
    "engine": "rules",
    "actuators": [
        {
            "device": "garden-valve",
            "actuator": "valve",
            "name": "garden water valve",
            "aliases": ["sprinklers", "sprinkler", "garden sprinkler"],
            "actions": ["open", "close"],
        }
    ],
}


def home_config(tmp_path: Path, port: int, **sections: dict[str, Any]) -> Path:
    """The test config with the lock and the valve; ``sections`` replace whole sections."""
    path = agent_config(tmp_path, port, policies=True, policy__every="1h")
    data = read_yaml(path.read_text())
    data["policies"] += [ENTRANCE, GARDEN]
    data.update(sections)
    path.write_text(yaml.safe_dump(data))
    return path


def start(
    factory: Callable[[Path], AgentProcess], config: Path, watch: Collector
) -> AgentProcess:
    return start_agent(factory, config, watch)


def ask(watch: Collector, rid: str, text: str | None = None, **extra: object) -> None:
    request: dict[str, object] = {"id": rid, **extra}
    if text is not None:
        request["text"] = text
    watch.publish(INTENTS, json.dumps(request))


def replies(watch: Collector, rid: str) -> list[dict[str, Any]]:
    return [r for r in watch.on(REPLY) if r.get("id") == rid]


def reply(watch: Collector, rid: str, n: int = 0, timeout: float = 120) -> dict[str, Any]:
    """The ``n``-th reply (from 0) to the requests with id ``rid``."""
    wait_for(lambda: len(replies(watch, rid)) > n, timeout=timeout, what=f"reply {n} to {rid}")
    return replies(watch, rid)[n]


def warm_up(watch: Collector) -> dict[str, Any]:
    """Ask until the model has answered once (it may still be loading): the reply to
    "turn off the living room ac", which sends the hvac an off command."""
    for i in range(6):
        ask(watch, f"warm-up-{i}", "turn off the living room ac")
        answer = reply(watch, f"warm-up-{i}")
        if "did not start within" not in str(answer["error"]):
            return answer
    raise AssertionError("the model never answered an intent")
