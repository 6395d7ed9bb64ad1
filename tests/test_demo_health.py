"""The demo shows diagnosis: the live view marks a room whose thermometer is faulty and explains
every fault and pause below the rooms; headless, each change is a line as it happens. The
failing-sensor scenario, run by the demo, shows the agent pausing and explaining."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from agent.config import read_yaml
from agent.demo import HOME, _mark, health_lines, health_news, run_demo
from agent.mqtt import Message
from agent.service.health import HealthService, safe_action
from tests.test_diagnosis_service import KEY, Recorder, config

KEY_NAME = "livingroom-1/temperature"


def stuck_service(tmp_path: Path) -> HealthService:
    now = [1.8e9]
    svc = HealthService(config(tmp_path), "pi", publish=Recorder(), key=KEY,
                        clock=lambda: now[0])
    rng = random.Random(2)
    for i in range(215):
        now[0] = 1.8e9 + 60 * i
        value = round(21 + rng.gauss(0, 0.1), 3) if i < 200 else 21.5
        body = json.dumps({"value": value, "ts": now[0]}).encode()
        svc.observe(Message(f"edge/sensors/{KEY_NAME}", body, 1, 0, now[0], 0))
        svc.tick()
    return svc


def test_a_faulty_thermometer_is_marked_explained_and_its_pause_shown(tmp_path: Path) -> None:
    svc = stuck_service(tmp_path)
    seen: set[tuple[str, ...]] = {("health", KEY_NAME, "suspect", "stuck")}
    news = health_news(svc, seen)  # a suspicion that became a fault is not "healthy again"
    assert len(news) == 1 and news[0].startswith(
        "livingroom-1/temperature faulty: livingroom-1 temperature looks stuck at 21.5")
    assert health_news(svc, seen) == []  # told once
    assert _mark(svc, KEY_NAME) == "  !! FAULTY stuck"
    assert _mark(svc, "bedroom-1/temperature") == ""
    policy = svc.config.policies[0]
    why = svc.hold(policy)
    assert svc.pause_changed(policy, why, safe_action(svc.config, policy))
    assert health_news(svc, seen) == [
        "policy climate is paused until livingroom-1/temperature is healthy again"]
    lines = health_lines(svc)
    assert lines[0].startswith("  ! faulty  livingroom-1/temperature: livingroom-1 temperature "
                               "looks stuck")
    assert lines[-1] == ("  paused: climate does not act on livingroom-1/temperature; "
                         "livingroom-hvac/hvac -> off")
    assert svc.pause_changed(policy, None, "off")
    assert health_news(svc, seen) == ["policy climate resumes"]


def test_a_healthy_home_shows_no_health_lines(tmp_path: Path) -> None:
    svc = HealthService(config(tmp_path), "pi", publish=Recorder(), key=KEY, clock=lambda: 1e9)
    assert health_lines(svc) == [] and health_news(svc, set()) == []
    assert _mark(svc, KEY_NAME) == ""


def demo_lines(tmp_path: Path, scenario: str, duration: float) -> str:
    data = read_yaml(HOME.read_text())
    for policy in data["policies"]:
        policy["engine"] = "rules"  # no model to load: the demo's diagnosis is what is shown
    data["model"]["path"] = str(tmp_path / "no-model.gguf")
    home = tmp_path / "home.yaml"
    home.write_text(yaml.safe_dump(data))
    lines: list[str] = []
    run_demo(config_path=home, scenario=scenario, duration=duration, speed=600,
             data_dir=tmp_path / "demo", live=False, echo=lines.append)
    return "\n".join(lines)


@pytest.mark.broker
@pytest.mark.slow
def test_the_failing_sensor_demo_shows_the_agent_pausing_and_explaining(tmp_path: Path) -> None:
    text = demo_lines(tmp_path, "failing-sensor", 40)
    assert "livingroom-1/temperature faulty: livingroom-1 temperature looks stuck" in text, text
    assert ("policy livingroom-climate is paused until livingroom-1/temperature is healthy "
            "again") in text
    assert "!! FAULTY stuck" in text  # the room's line in the periodic view


@pytest.mark.broker
@pytest.mark.slow
def test_the_failing_actuator_demo_explains_the_dead_hvac_and_the_deaf_one(
        tmp_path: Path) -> None:
    text = demo_lines(tmp_path, "failing-actuator", 60)
    assert "livingroom-hvac/hvac faulty: livingroom-hvac hvac has been set to" in text, text
    assert "it seems to have no effect" in text
    assert "bedroom-hvac/hvac faulty: bedroom-hvac hvac did not report any state" in text
    assert "bedroom-hvac/hvac is healthy again" not in text
