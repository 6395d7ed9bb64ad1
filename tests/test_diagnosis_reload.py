"""SIGHUP reload refreshes the diagnosis: its settings, rooms, actuator timing and check interval
change in the running HealthService; what it learnt about each series stays; a bad file
changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.broker import Mosquitto
from agent.config import load_config, read_yaml
from agent.mqtt import Message
from agent.service.runtime import Agent
from tests.conftest import agent_config

pytestmark = pytest.mark.broker


def write(path: Path, data: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(data))


@pytest.fixture
def setup(tmp_path: Path, broker: Mosquitto) -> Iterator[tuple[Agent, Path, dict[str, Any]]]:
    path = agent_config(tmp_path, broker.port, policies=True, policy__every="1h",
                        policy__engine="rules")
    data = read_yaml(path.read_text())
    data["policies"][0].pop("peers", None)
    data["model"]["path"] = str(tmp_path / "no-model.gguf")
    write(path, data)
    running = Agent(load_config(path))
    running.start()
    yield running, path, data
    running.stop()


def test_sighup_reload_refreshes_the_diagnosis(setup: tuple[Agent, Path, dict[str, Any]]) -> None:
    agent, path, data = setup
    health = agent.health
    body = json.dumps({"value": 21.0}).encode()
    health.observe(Message("edge/sensors/livingroom-1/temperature", body, 1, 0, 1e9, 0))
    assert list(health.diagnoser.series) == ["livingroom-1/temperature"]
    job = agent.scheduler.get_job("health")
    assert job is not None and job.trigger.interval.total_seconds() == 10
    data["diagnosis"] = {"check_every": "3s", "rooms": {"lounge": ["livingroom-1",
                                                                    "livingroom-2"]},
                         "effect_after": "5m", "pause_on": ["silent"],
                         "safe_actions": {"climate": "hold"}}
    write(path, data)
    assert agent.reload(path)
    d = health.config.diagnosis
    assert (d.check_every, d.pause_on, d.safe_actions) == (3.0, ["silent"], {"climate": "hold"})
    assert health.diagnoser.layout.room_of("livingroom-2") == ["livingroom-1", "livingroom-2"]
    assert health.diagnoser.layout.timing.effect_after == 300.0
    assert list(health.diagnoser.series) == ["livingroom-1/temperature"]  # kept
    job = agent.scheduler.get_job("health")
    assert job is not None and job.trigger.interval.total_seconds() == 3
    assert agent.decisions is not None and agent.decisions.safety.health == health.lookup

    write(path, {**data, "diagnosis": {"check_every": "nonsense"}})
    assert not agent.reload(path)
    assert health.config.diagnosis.check_every == 3.0

    write(path, {**data, "diagnosis": {"enabled": False}})
    assert agent.reload(path)
    assert not health.enabled and agent.scheduler.get_job("health") is None
    assert health.lookup("livingroom-1/temperature") is None
