"""An interlock that names a fault: ``when: "livingroom-1/temperature is faulty"`` forces its
``then`` while the series (or actuator) is faulty and refuses everything else on that actuator;
an unknown health, a healthy series or another fault does not hold. The configuration refuses
a word that is neither a state nor a fault, with its path and line. On a real broker, a silent
thermometer turns the living-room HVAC off through the interlock alone."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from agent.broker import Mosquitto
from agent.config import load_config, parse_config, read_yaml
from agent.errors import ConfigError
from agent.policy.safety import Proposal, SafetyLayer
from agent.service.runtime import Agent
from tests.conftest import Collector, agent_config, wait_for

CONFIG = """
policies:
  - name: climate
    inputs: [livingroom-1/temperature]
    targets: {livingroom-1/temperature: [20, 24]}
    actuators:
      - device: livingroom-hvac
        actuator: hvac
        actions: [cool, heat, "off"]
        value: {min: 16, max: 28}
      - device: livingroom-fan
        actuator: fan
        actions: ["on", "off"]
        respond: {above: "on", inside: "off"}
interlocks:
  - name: no climate on a broken thermometer
    when: "livingroom-1/temperature is faulty"
    then: "livingroom-hvac/hvac=off"
  - name: fan off while the HVAC does nothing
    when: "livingroom-hvac/hvac is no_effect"
    then: "livingroom-fan/fan=off"
"""
HVAC = "livingroom-1/temperature"


def no_readings(device: str, quantity: str) -> float | None:
    return None


def layer_with(health: dict[str, tuple[str, str | None]]) -> SafetyLayer:
    layer = SafetyLayer(parse_config(CONFIG))
    layer.health = health.get
    return layer


def cool() -> Proposal:
    return Proposal("climate", "livingroom-hvac", "hvac", "cool", 22.0)


def test_a_faulty_series_forces_the_then_action_and_refuses_the_others() -> None:
    layer = layer_with({HVAC: ("faulty", "stuck")})
    assert layer.forced(0.0, no_readings) == [
        Proposal("climate", "livingroom-hvac", "hvac", "off", None, "interlock")]
    verdict = layer.check(cool(), 0.0, no_readings)
    assert not verdict.allowed and verdict.kind == "interlock"
    assert "livingroom-1/temperature is faulty" in verdict.reason
    assert layer.check(Proposal("climate", "livingroom-hvac", "hvac", "off", None, "interlock"),
                       0.0, no_readings).allowed


@pytest.mark.parametrize("health", [
    {},  # never seen: unknown is not faulty
    {HVAC: ("ok", None)},
    {HVAC: ("suspect", "stuck")},
])
def test_an_unknown_healthy_or_suspect_series_holds_nothing(
        health: dict[str, tuple[str, str | None]]) -> None:
    layer = layer_with(health)
    assert layer.forced(0.0, no_readings) == []
    assert layer.check(cool(), 0.0, no_readings).allowed
    forced = Proposal("climate", "livingroom-hvac", "hvac", "off", None, "interlock")
    assert layer.check(forced, 0.0, no_readings).kind == "interlock"  # none in force


def test_a_named_fault_holds_only_for_that_fault_and_suspect_includes_faulty() -> None:
    fan_off = Proposal("climate", "livingroom-fan", "fan", "off", None, "interlock")
    assert layer_with({"livingroom-hvac/hvac": ("faulty", "no_ack")}).forced(0.0, no_readings) \
        == []
    assert layer_with({"livingroom-hvac/hvac": ("faulty", "no_effect")}).forced(
        0.0, no_readings) == [fan_off]
    text = CONFIG.replace("temperature is faulty", "temperature is suspect")
    for state in ("suspect", "faulty"):
        layer = SafetyLayer(parse_config(text))
        layer.health = {HVAC: (state, "drift")}.get
        assert not layer.check(cool(), 0.0, no_readings).allowed


def test_without_a_health_lookup_a_fault_interlock_never_holds() -> None:
    layer = SafetyLayer(parse_config(CONFIG))  # diagnosis off: nothing tells it
    assert layer.forced(0.0, no_readings) == []
    assert layer.check(cool(), 0.0, no_readings).allowed


def test_a_word_that_is_no_state_nor_fault_is_refused_with_path_and_line() -> None:
    text = CONFIG.replace("temperature is faulty", "temperature is broken")
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    [message] = err.value.errors
    assert message.startswith("interlocks[0].when: 'broken' is not a health state nor a fault")
    assert "(line 17)" in message  # the when: line
    with pytest.raises(ConfigError, match='"livingroom-1/temperature is faulty"'):
        parse_config(CONFIG.replace("temperature is faulty", "temperature faulty"))


# -- on a real broker -------------------------------------------------------------------------


@pytest.fixture
def agent(tmp_path: Path, broker: Mosquitto) -> Iterator[Agent]:
    path = agent_config(tmp_path, broker.port, policies=True, policy__every="1h",
                        policy__engine="rules")
    data = read_yaml(path.read_text())
    data["policies"][0].pop("peers", None)
    data["model"]["path"] = str(tmp_path / "no-model.gguf")
    data["interlocks"] = [{"name": "no climate on a broken thermometer",
                           "when": f"{HVAC} is faulty", "then": "livingroom-hvac/hvac=off"}]
    # the policy itself would also pause on the fault: only the interlock acts here
    data["diagnosis"] = {"pause": False, "check_every": "500ms"}
    path.write_text(yaml.safe_dump(data))
    running = Agent(load_config(path))
    running.start()
    assert running.mqtt.wait_connected(20)
    yield running
    running.stop()


@pytest.mark.broker
def test_a_silent_thermometer_turns_the_hvac_off_through_the_interlock(
        agent: Agent, broker: Mosquitto, collector_factory: Callable[..., Collector]) -> None:
    c = collector_factory(broker.port, "edge/actuators/livingroom-hvac/hvac/set",
                          "edge/agents/test-agent/faults")
    for i in range(30):  # a usual interval of 0.2 s, then nothing
        c.publish(f"edge/sensors/{HVAC}", json.dumps({"value": 21.0 + (i % 3) / 10, "seq": i}))
        time.sleep(0.2)
    assert agent.decisions is not None
    assert agent.decisions.safety.check(cool(), time.time(), no_readings).allowed
    wait_for(lambda: any(e.get("state") == "faulty" for e in c.on(
        "edge/agents/test-agent/faults")), what="the thermometer faulty", timeout=30)
    wait_for(lambda: bool(c.on("edge/actuators/livingroom-hvac/hvac/set")),
             what="the interlock's command", timeout=30)
    [command] = c.on("edge/actuators/livingroom-hvac/hvac/set")
    assert command["action"] == "off"
    assert command["reason"] == "interlock: livingroom-hvac/hvac must be off"
    verdict = agent.decisions.safety.check(cool(), time.time(), no_readings)
    assert not verdict.allowed and verdict.kind == "interlock"
