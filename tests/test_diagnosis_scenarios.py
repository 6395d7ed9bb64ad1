"""Fault diagnosis end to end: the failing-sensor and failing-actuator scenarios on a real
broker, headless and accelerated, with a real agent. The agent finds every injected fault,
explains it on the retained health topics, pauses the policies that read a faulty input (their
HVAC goes off) and raises nothing on the series that are fine."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.broker import Mosquitto
from agent.config import Config, PolicyConfig, load_config
from agent.demo import HOME, demo_config, prepare_data_dir
from agent.policy.signing import load_key
from agent.service.runtime import Agent
from firmware_sim.house import House
from tests.conftest import Collector

pytestmark = [pytest.mark.broker, pytest.mark.slow]

SPEED = 600.0  # simulated seconds per second
PREFIX = "edge/agents/home-agent"


def config(broker: Mosquitto, data: Path, key_file: Path, **diagnosis: Any) -> Config:
    cfg = demo_config(load_config(HOME), data, broker, key_file, SPEED)
    return cfg.model_copy(update={
        "policies": [p.model_copy(update={"engine": "rules"}) for p in cfg.policies],
        "model": cfg.model.model_copy(update={"path": str(data / "no-model.gguf")}),
        "diagnosis": cfg.diagnosis.model_copy(update={"check_every": 0.5, **diagnosis}),
    })


def run(scenario: str, cfg: Config, broker: Mosquitto, key: bytes, hours: float,
        done: Callable[[Collector], bool], collector: Collector) -> House:
    agent = Agent(cfg)
    house = House.from_scenario(scenario, broker.host, broker.port, key=key, speed=SPEED)
    agent.start()
    house.start()
    try:
        deadline = time.monotonic() + hours * 3600 / SPEED * 2 + 30
        while house.sim_time < hours * 3600 and time.monotonic() < deadline:
            time.sleep(0.5)
            assert house.error is None, house.error
            if done(collector):
                break
    finally:
        house.stop()
        agent.stop()
    return house


def events(c: Collector) -> list[dict[str, Any]]:
    return c.on(f"{PREFIX}/faults")


def faulty(c: Collector) -> dict[str, set[str]]:
    """key -> the faults it was declared faulty with."""
    out: dict[str, set[str]] = {}
    for e in events(c):
        if e.get("state") == "faulty":
            out.setdefault(e["key"], set()).add(e["fault"])
    return out


def paused(c: Collector) -> dict[str, str]:
    return {e["key"]: e["input"] for e in events(c) if e.get("state") == "paused"}


def retained(c: Collector, key: str) -> dict[str, Any] | None:
    topic = f"{PREFIX}/health/{key}"
    found = [json.loads(p) for t, p, _ in c.messages if t == topic]
    return found[-1] if found else None


def test_failing_sensor_every_fault_found_explained_and_its_policy_paused(
    broker: Mosquitto, tmp_path: Path, collector_factory: Callable[..., Collector]
) -> None:
    key_file = prepare_data_dir(tmp_path)
    rooms = {"bedroom": ["bedroom-1", "bedroom-2", "bedroom-3"]}
    cfg = config(broker, tmp_path, key_file, rooms=rooms)
    c = collector_factory(broker.port, f"{PREFIX}/health/#", f"{PREFIX}/faults")
    expected = {
        "livingroom-1/temperature": "stuck",
        "bedroom-1/temperature": "drift",
        "hall-1/temperature": "silent",
        "hall-1/motion": "silent",
        "hall-1/light": "silent",
    }

    def found_all(col: Collector) -> bool:
        f, p = faulty(col), paused(col)
        return all(v in f.get(k, set()) for k, v in expected.items()) and len(p) >= 2

    house = run("failing-sensor", cfg, broker, load_key(key_file), 9.0, found_all, c)
    found = faulty(c)
    for key, fault in expected.items():
        assert fault in found.get(key, set()), (key, found)
    # injected too: spikes on the living room and the kitchen's CO2, bare Fahrenheit numbers
    allowed = set(expected) | {"kitchen-1/co2", "kitchen-1/temperature", "garden-1/humidity"}
    assert set(found) <= allowed, found
    stuck = next(e for e in events(c) if e.get("fault") == "stuck")
    assert "livingroom-1 temperature looks stuck" in stuck["explanation"]
    assert stuck["evidence"]["same_readings"] >= 8
    assert paused(c).get("livingroom-climate") == "livingroom-1/temperature"
    assert paused(c).get("bedroom-climate") == "bedroom-1/temperature"
    # paused: the living-room HVAC is off (sent, or already there) and nothing else is sent
    assert house.actuators["livingroom-hvac/hvac"].state.action == "off"
    later = [a.action for a in house.commands if a.device == "livingroom-hvac"
             and a.command_id is not None and a.t >= 3.5 * 3600]
    assert set(later) <= {"off"}, later
    assert house.sim_time >= 3.5 * 3600
    # it decided before the pause and not after it (only the diagnosis's own safe command)
    pause = next(e["ts"] for e in events(c) if e.get("state") == "paused"
                 and e["key"] == "livingroom-climate")
    with sqlite3.connect(tmp_path / "edge-agent.db") as db:
        rows = db.execute("SELECT ts, engine FROM audit WHERE policy = 'livingroom-climate'"
                          ).fetchall()
    assert any(ts < pause and engine == "rules" for ts, engine in rows)
    assert {engine for ts, engine in rows if ts > pause + 0.5} <= {"diagnosis"}
    health = retained(c, "bedroom-1/temperature")
    assert health is not None and set(health) >= {"state", "fault", "since", "confidence",
                                                  "evidence", "explanation"}
    reference = retained(c, "bedroom-2/temperature")
    assert reference is not None and reference["state"] == "ok"


def test_failing_actuator_every_fault_found_and_explained(
    broker: Mosquitto, tmp_path: Path, collector_factory: Callable[..., Collector]
) -> None:
    key_file = prepare_data_dir(tmp_path)
    cfg = config(broker, tmp_path, key_file, effect_after=20 * 60 / SPEED)
    valve = next(a for p in cfg.policies for a in p.actuators if a.device == "garden-valve")
    garden = PolicyConfig.model_validate({
        "name": "garden-water", "engine": "rules",
        "inputs": ["garden-1/humidity"], "targets": {"garden-1/humidity": [40, 60]},
        "actuators": [{**valve.model_dump(exclude_none=True),
                       "respond": {"above": "close", "below": "open", "inside": "close"}}],
    }).model_copy(update={"every": cfg.policies[0].every, "safety": cfg.policies[0].safety})
    policies = [p.model_copy(update={"safety": p.safety.model_copy(update={"command_ttl": 3.0})})
                for p in [*cfg.policies, garden]]  # unanswered within 30 simulated minutes
    cfg = cfg.model_copy(update={"policies": policies})
    c = collector_factory(broker.port, f"{PREFIX}/health/#", f"{PREFIX}/faults")
    expected = {
        "livingroom-hvac/hvac": "no_effect",
        "bedroom-hvac/hvac": "no_ack",
        "garden-valve/valve": "contradicts",
    }

    def found_all(col: Collector) -> bool:
        f = faulty(col)
        return all(v in f.get(k, set()) for k, v in expected.items())

    run("failing-actuator", cfg, broker, load_key(key_file), 14.0, found_all, c)
    found = faulty(c)
    for key, fault in expected.items():
        assert fault in found.get(key, set()), (key, found)
    assert set(found) <= set(expected), found
    health = retained(c, "actuators/livingroom-hvac/hvac")
    assert health is not None and health["fault"] == "no_effect"
    assert "no effect" in health["explanation"]
