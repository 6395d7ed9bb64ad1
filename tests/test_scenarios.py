"""Scenario files: the bundled ones validate and drive the example home, a bad one is refused
with every error and its path, a seed repeats a run, and ``firmware-sim run`` works end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import pytest
from click.testing import CliRunner

from agent.broker import Mosquitto, free_port
from agent.config import load_config
from agent.pipeline.parse import parse_reading
from firmware_sim.actuators import KINDS
from firmware_sim.cli import cli
from firmware_sim.house import House, Message
from firmware_sim.scenario import (
    QUANTITIES,
    UNITS,
    ActuatorKind,
    Quantity,
    Scenario,
    ScenarioError,
    bundled_scenarios,
    parse_scenario,
    scenario_from,
)
from tests.helpers import COMMAND_KEY, ROOT

HOME = ROOT / "config" / "home.example.yaml"
KEY = COMMAND_KEY
NAMES = {"normal-day", "heatwave", "cold-night", "failing-sensor", "broker-outage"}
BAD = """\
name: bad
seed: 1
start: "25:00"
tick: 10
colour: red
rooms:
  kitchen:
    humidity: 120
    physics: {volume_m3: 0}
    sensors:
      - device: kitchen-1
        quantities: [temperature, smell]
        every: 1m
        faults:
          temperature: {noise: -1, spikes: 2, wobble: 1}
    actuators:
      - {device: kitchen-hvac, actuator: hvac, range: [30, 16]}
      - {device: kitchen-toaster, actuator: toaster}
events:
  - {at: 1h, device: kitchen-hvac, actuator: hvac, action: "on"}
"""


def bundled() -> list[Path]:
    return bundled_scenarios()


def test_the_bundled_scenarios_are_all_there() -> None:
    assert {p.stem for p in bundled()} >= NAMES


@pytest.mark.parametrize("path", bundled(), ids=lambda p: p.stem)
def test_every_bundled_scenario_validates(path: Path) -> None:
    scenario = scenario_from(path)
    assert scenario.name == path.stem
    assert scenario.rooms and scenario.seed
    assert scenario_from(path.stem) == scenario  # a bare name finds the bundled file


@pytest.mark.parametrize("path", bundled(), ids=lambda p: p.stem)
def test_every_scenario_drives_the_example_home(path: Path) -> None:
    """Every actuator the example policies command exists, with their actions and values, and
    every input they read is published."""
    scenario = scenario_from(path)
    specs = {key: spec for key, (_, spec) in scenario.actuator_specs().items()}
    published = {
        f"{s.device}/{q}" for r in scenario.rooms.values() for s in r.sensors for q in s.quantities
    }
    for policy in load_config(HOME).policies:
        assert set(policy.inputs) <= published, policy.name
        for act in policy.actuators:
            spec = specs[act.key]
            assert set(act.actions) <= set(spec.kind.actions), act.key
            if act.value is not None:
                assert spec.value_range is not None
                lo, hi = spec.value_range
                assert lo <= act.value.min and act.value.max <= hi, act.key
        for name, band in policy.targets.items():
            room = next(
                r
                for r in scenario.rooms.values()
                if any(f"{s.device}/temperature" == name for s in r.sensors)
            )
            assert room.target == tuple(band), name


def test_outages_are_scheduled_in_the_outage_scenario() -> None:
    house = House.from_scenario("broker-outage", key=KEY)
    assert house.outages == [(3 * 3600.0, 3 * 3600.0 + 900.0), (9 * 3600.0, 10 * 3600.0)]
    assert not house.in_outage(0) and house.in_outage(3 * 3600 + 60)
    assert house.in_outage(9.5 * 3600) and not house.in_outage(10 * 3600)


def test_a_bad_scenario_lists_every_error_with_its_path() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(BAD, "bad.yaml")
    errors = info.value.errors
    for expected in [
        "start: time of day must be \"HH:MM\" from 00:00 to 23:59, got '25:00' (line 3)",
        'tick: duration must be a string like "30s", got 10 (line 4)',
        "colour: unknown key (line 5)",
        "rooms.kitchen.humidity: Input should be less than or equal to 100 (line 8)",
        "rooms.kitchen.physics: volume_m3 must be > 0, got 0.0 (line 9)",
        "rooms.kitchen.sensors[0].quantities[1]: Input should be",
        "rooms.kitchen.sensors[0].faults.temperature.noise: Input should be greater than or equal",
        "rooms.kitchen.sensors[0].faults.temperature.spikes: Input should be less than or equal",
        "rooms.kitchen.sensors[0].faults.temperature.wobble: unknown key",
        "rooms.kitchen.actuators[0]: range must be [low, high] with low < high, got [30.0, 16.0]",
        "rooms.kitchen.actuators[1].actuator: Input should be 'hvac', 'light'",
    ]:
        assert any(e.startswith(expected) for e in errors), (expected, errors)
    assert len(errors) == 11, errors


def test_cross_references_are_checked_once_each_part_is_valid() -> None:
    text = """\
name: crossed
seed: 1
rooms:
  kitchen:
    sensors:
      - {device: kitchen-1, quantities: [temperature, co2]}
      - {device: kitchen-1, quantities: [humidity, temperature], every: 5m}
    actuators:
      - {device: kitchen-hvac, actuator: hvac}
      - {device: kitchen-hvac, actuator: hvac}
  hall:
    sensors: [{device: kitchen-1, quantities: [motion]}]
events:
  - {at: 1h, device: kitchen-hvac, actuator: hvac, action: "on"}
  - {at: 2h, device: garage-door, actuator: lock, action: lock}
  - {at: 0s, device: kitchen-hvac, actuator: hvac, action: heat, value: 45}
"""
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text)
    assert info.value.errors == [
        "rooms.kitchen.sensors[1].quantities: kitchen-1/temperature is sent twice",
        "rooms.kitchen.actuators[1]: kitchen-hvac/hvac is there twice",
        "rooms.hall.sensors[0].device: kitchen-1 is in kitchen",
        "events[0].action: a hvac does one of cool, heat, off, got 'on'",
        "events[1].device: no actuator garage-door/lock in any room",
        "events[2].value: 45 is outside kitchen-hvac/hvac's range [16, 30]",
    ]


def test_not_yaml_and_not_a_mapping_are_errors() -> None:
    with pytest.raises(ScenarioError, match="not valid YAML"):
        parse_scenario("rooms: [", "x.yaml")
    with pytest.raises(ScenarioError, match="the top level must be a mapping"):
        parse_scenario("- 1\n", "x.yaml")
    with pytest.raises(ScenarioError, match="no such file, nor a bundled scenario"):
        scenario_from("no-such-scenario")


def test_the_literals_match_the_tables() -> None:
    assert set(get_args(ActuatorKind)) == set(KINDS)
    assert get_args(Quantity) == QUANTITIES == tuple(UNITS)


def readings(scenario: Scenario | str, ticks: int, seed: int | None = None) -> list[Message]:
    house = House.from_scenario(scenario, key=KEY, seed=seed, wall_clock=lambda: 1.8e9)
    return [m for _ in range(ticks) for m in house.tick()]


def test_the_same_seed_gives_the_same_readings() -> None:
    one, two = readings("failing-sensor", 600), readings("failing-sensor", 600)
    assert len(one) > 1000
    assert one == two
    assert readings("failing-sensor", 600, seed=1) != one


def test_readings_follow_the_wire_contract() -> None:
    """What the sensors send parses as SPEC 1 says (the faults aside, which must fail)."""
    messages = readings("normal-day", 400)
    topics = {m.topic for m in messages}
    assert "edge/sensors/livingroom-1/temperature" in topics
    assert "edge/sensors/hall-1/motion" in topics
    for m in messages:
        reading = parse_reading(m.topic, m.payload, 1.8e9, prefix="edge", max_bytes=4096)
        assert reading.ts == 1.8e9
        body = json.loads(m.payload)
        assert body["seq"] >= 1 and body.get("unit") == UNITS[m.topic.rsplit("/", 1)[1]]


def test_faults_show_in_the_readings() -> None:
    messages = readings("failing-sensor", 8640)  # a whole simulated day
    by_topic: dict[str, list[bytes]] = {}
    for m in messages:
        by_topic.setdefault(m.topic, []).append(m.payload)

    def values(topic: str) -> list[Any]:
        out = []
        for p in by_topic[topic]:
            try:
                out.append(json.loads(p))
            except ValueError:
                out.append(None)
        return out

    kitchen = values("edge/sensors/kitchen-1/temperature")
    assert any(isinstance(v, dict) and v.get("unit") == "F" for v in kitchen)
    assert any(isinstance(v, float) for v in kitchen)  # bare numbers
    living = [v["value"] for v in values("edge/sensors/livingroom-1/temperature")]
    assert max(living.count(v) for v in living) > 100  # stuck for four hours at one minute
    hall = values("edge/sensors/hall-1/motion")
    assert len(hall) < 24 * 30 * 0.85  # dropouts and two hours offline, from one every 2 min
    seqs = [v["seq"] for v in hall]
    assert seqs == sorted(seqs) and len(set(seqs)) < seqs[-1]  # gaps where readings were lost
    co2 = by_topic["edge/sensors/livingroom-1/co2"]
    assert len(co2) > len(set(co2))  # duplicate redeliveries


@pytest.mark.broker
def test_run_drives_a_house_on_the_broker_and_sums_up(tmp_path: Path) -> None:
    key_file = tmp_path / "command.key"
    key_file.write_bytes(KEY)
    key_file.chmod(0o600)
    with Mosquitto(workdir=tmp_path) as broker:
        result = CliRunner().invoke(
            cli,
            [
                "run",
                "--scenario",
                "normal-day",
                "--broker",
                f"127.0.0.1:{broker.port}",
                "--speed",
                "3600",
                "--duration",
                "1.5",
                "--key-file",
                str(key_file),
                "--progress",
                "0.5",
            ],
        )
    assert result.exit_code == 0, result.output
    assert "ran normal-day for" in result.output
    assert "livingroom" in result.output and "in band" in result.output
    assert "livingroom-hvac/hvac" in result.output
    assert "day 1 " in result.output  # progress lines


def test_run_with_a_bad_scenario_exits_2_listing_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    result = CliRunner().invoke(cli, ["run", "--scenario", str(bad)])
    assert result.exit_code == 2
    assert "invalid scenario" in result.output and "(11 errors)" in result.output
    assert "colour: unknown key (line 5)" in result.output


def test_run_with_an_unreachable_broker_exits_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["run", "--scenario", "normal-day", "--broker", f"127.0.0.1:{free_port()}"]
    )
    assert result.exit_code == 1
    assert "cannot reach the MQTT broker at 127.0.0.1:" in result.output


def test_run_with_a_missing_key_file_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["run", "--scenario", "normal-day", "--key-file", str(tmp_path / "nope.key")]
    )
    assert result.exit_code == 2
    assert "does not exist" in result.output
