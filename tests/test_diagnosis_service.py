"""The diagnoser over a whole home and the agent's health service: which sensor drifted when
three disagree, everything silent at once, the health topics and fault events, a paused policy
and its resumption, signed commands only, and the configuration."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from agent.config import parse_config
from agent.diagnosis.fleet import Diagnoser, Layout
from agent.diagnosis.verdict import FAULTY
from agent.errors import ConfigError
from agent.mqtt import Message
from agent.policy.signing import make_command
from agent.service.health import HealthService, layout_of, safe_action
from tests.conftest import EXAMPLE_CONFIG

KEY = b"k" * 32


def test_of_three_thermometers_the_one_that_walked_away_drifted() -> None:
    diag = Diagnoser(Layout(rooms={"bed": ["b-1", "b-2", "b-3"]}))
    rng = random.Random(1)
    changes = []
    for i in range(400):
        t = 1000.0 + 60 * i
        true = 19 + (i % 200) / 100
        offset = max(0.0, (i - 100) * 0.4 / 60)  # b-1 reads 0.4 K more each hour from i = 100
        for dev, extra in (("b-1", offset), ("b-2", 0.0), ("b-3", 0.0)):
            diag.reading(dev, "temperature", t + 1, round(true + extra + rng.gauss(0, 0.05), 3))
        changes += diag.check(t + 2)
    faulty = {(c.key, c.health.fault) for c in changes if c.health.state == FAULTY}
    assert faulty == {("b-1/temperature", "drift")}


def test_everything_silent_at_once_is_the_agent_cut_off() -> None:
    diag = Diagnoser()
    for i in range(50):
        for dev in ("a", "b", "c", "d"):
            diag.reading(dev, "temperature", 60.0 * i, 20 + random.random())
    changes = diag.check(60.0 * 49 + 1200)
    assert [c for c in changes if c.health.state == FAULTY] == []


def config(tmp_path: Path, **diagnosis: Any) -> Any:
    text = EXAMPLE_CONFIG.read_text()
    key = tmp_path / "command.key"
    key.write_bytes(KEY)
    text = text.replace("/etc/edge-agent/command.key", str(key))
    cfg = parse_config(text)
    return cfg.model_copy(update={"diagnosis": cfg.diagnosis.model_copy(update=diagnosis)})


class Recorder:
    """The service's publish callback: what it would hand to the MQTT client."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], bool]] = []

    def __call__(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.sent.append((topic, json.loads(payload), retain))


def reading(t: float, value: float, device: str = "livingroom-1") -> Message:
    body = json.dumps({"value": value, "ts": t}).encode()
    return Message(f"edge/sensors/{device}/temperature", body, 1, 0, t, 0)


def test_the_health_topics_the_fault_events_and_a_paused_policy(tmp_path: Path) -> None:
    now = [1.8e9]
    out = Recorder()
    svc = HealthService(config(tmp_path), "pi", publish=out, key=KEY, clock=lambda: now[0])
    policy = svc.config.policies[0]
    rng = random.Random(2)
    for i in range(200):
        now[0] = 1.8e9 + 60 * i
        svc.observe(reading(now[0], round(21 + rng.gauss(0, 0.1), 3)))
        svc.tick()
    assert svc.hold(policy) is None
    topic = "edge/agents/pi/health/livingroom-1/temperature"
    assert [(t, m["state"], r) for t, m, r in out.sent if t == topic] == [(topic, "ok", True)]
    for i in range(200, 215):  # stuck
        now[0] = 1.8e9 + 60 * i
        svc.observe(reading(now[0], 21.5))
        svc.tick()
    why = svc.hold(policy)
    assert why is not None and why[0] == "livingroom-1/temperature"
    assert why[1].fault == "stuck"
    retained = [m for t, m, r in out.sent if t == topic and r][-1]
    assert retained["state"] == "faulty" and retained["fault"] == "stuck"
    assert set(retained) == {"state", "fault", "since", "confidence", "evidence",
                             "explanation", "engine", "ts"}
    assert retained["engine"] == "statistical"
    events = [m for t, m, _ in out.sent if t == "edge/agents/pi/faults"]
    assert events[-1]["key"] == "livingroom-1/temperature" and events[-1]["previous"] == "ok"
    assert svc.pause_changed(policy, why, safe_action(svc.config, policy))
    assert not svc.pause_changed(policy, why, "off")  # told once
    paused = [m for t, m, _ in out.sent if t == "edge/agents/pi/faults"][-1]
    assert paused["state"] == "paused" and paused["action"] == "off"
    assert paused["explanation"].startswith("policy climate is paused: livingroom-1 temperature "
                                            "looks stuck at 21.5")
    assert svc.status()["paused"] == {"climate": "livingroom-1/temperature"}
    assert svc.pause_changed(policy, None, "off")
    assert [m for t, m, _ in out.sent][-1]["state"] == "resumed"


def test_only_signed_commands_count_and_they_are_consumed(tmp_path: Path) -> None:
    svc = HealthService(config(tmp_path), "pi", publish=Recorder(), key=KEY, clock=lambda: 5e8)
    good = make_command(device="livingroom-hvac", actuator="hvac", action="heat", value=22.0,
                        policy="p", agent="pi", reason="", key=KEY, now=5e8, ttl=30)
    forged = {**good, "action": "cool"}
    topic = "edge/actuators/livingroom-hvac/hvac/set"
    assert svc.observe(Message(topic, json.dumps(forged).encode(), 1, 0, 5e8, 0))
    assert svc.observe(Message(topic, b"\xff{", 1, 0, 5e8, 0))
    assert svc.dropped == 2 and "livingroom-hvac/hvac" not in svc.diagnoser.actuators
    assert svc.observe(Message(topic, json.dumps(good).encode(), 1, 0, 5e8, 0))
    assert svc.diagnoser.actuators["livingroom-hvac/hvac"].last_command is not None
    assert svc.observe(Message("edge/sensors/x/temperature", b"garbage", 1, 0, 5e8, 0)) is False
    other = make_command(device="h", actuator="hvac", action="heat", value=22.0, policy="p",
                         agent="pi", reason="", key=KEY, now=5e8, ttl=30)
    assert svc.observe(Message("edge/actuators/h/hvac/set", json.dumps(other).encode(), 1, 0,
                               5e8, 0))
    assert "h/hvac" not in svc.diagnoser.actuators  # no policy names it: not tracked


def test_what_the_wire_can_make_it_track_is_bounded(tmp_path: Path) -> None:
    svc = HealthService(config(tmp_path), "pi", publish=Recorder(), key=KEY, clock=lambda: 5e8)
    cap = svc.config.sensors.max_series_per_device
    for i in range(cap + 50):
        svc.observe(Message(f"edge/sensors/flood/q{i}", b"1.5", 1, 0, 5e8, 0))
    for i in range(100):
        svc.observe(Message(f"edge/actuators/ghost-{i}/relay/state", b'{"action": "on"}', 1, 0,
                            5e8, 0))
    assert len(svc.diagnoser.series) == cap and svc.diagnoser.actuators == {}
    assert svc.ignored == 150


def test_the_layout_comes_from_the_policies_and_the_rooms(tmp_path: Path) -> None:
    cfg = config(tmp_path, rooms={"lounge": ["livingroom-1", "livingroom-2"]})
    layout = layout_of(cfg)
    assert layout.hvac_rooms == {"livingroom-hvac/hvac": "livingroom-1/temperature"}
    assert layout.room_of("livingroom-2") == ["livingroom-1", "livingroom-2"]
    assert layout.bounds["temperature"] == (-40.0, 85.0)


def test_a_bad_safe_action_is_refused_with_its_path() -> None:
    text = EXAMPLE_CONFIG.read_text() + (
        "diagnosis:\n  safe_actions: {climate: explode, nobody: hold}\n  pause_on: [bored]\n")
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    assert "diagnosis.pause_on" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config(EXAMPLE_CONFIG.read_text() + "diagnosis:\n  safe_actions: {climate: boom}\n")
    assert "diagnosis.safe_actions.climate: 'boom' is not hold nor one of" in str(err.value)


def test_a_config_without_the_diagnosis_section_keeps_running() -> None:
    cfg = parse_config(EXAMPLE_CONFIG.read_text())
    assert cfg.diagnosis.enabled and cfg.diagnosis.pause
    assert safe_action(cfg, cfg.policies[0]) == "off"


def test_prometheus_gauges_of_health_and_pauses() -> None:
    from agent.service.metrics import Metrics

    m = Metrics()
    m.add_health(lambda: ({("sensor", "a-1/temperature"): ("faulty", "stuck"),
                           ("actuator", "h/hvac"): ("ok", None)}, {"climate": "a-1/temperature"}))
    text = m.render().decode()
    assert 'edge_agent_health_state{fault="stuck",key="a-1/temperature",kind="sensor"} 2.0' in text
    assert 'edge_agent_health_state{fault="",key="h/hvac",kind="actuator"} 0.0' in text
    assert 'edge_agent_policy_paused{input="a-1/temperature",policy="climate"} 1.0' in text


def test_home_assistant_problem_sensors_follow_the_health_topics(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cfg = cfg.model_copy(update={"homeassistant": cfg.homeassistant.model_copy(
        update={"discovery": True})})
    out = Recorder()
    svc = HealthService(cfg, "pi", publish=out, key=KEY, clock=lambda: 1.8e9)
    svc.observe(reading(1.8e9, 21.0))
    svc.tick()
    disco = [(t, m) for t, m, r in out.sent if t.startswith("homeassistant/")]
    assert sorted(t for t, _ in disco) == [  # the HVAC warmed by that room too
        "homeassistant/binary_sensor/pi/health_livingroom-1_temperature/config",
        "homeassistant/binary_sensor/pi/health_livingroom-hvac_hvac/config"]
    payload = next(m for t, m in disco if "temperature" in t)
    health = "edge/agents/pi/health/livingroom-1/temperature"
    assert payload["device_class"] == "problem" and payload["state_topic"] == health
    assert payload["json_attributes_topic"] == health
    assert "explanation" in payload["json_attributes_template"]
