"""Values per action: a range belongs to the actions that take a value; on/off never need one."""

from __future__ import annotations

import pytest

from agent.actionvalues import value_actions, value_required
from agent.config import parse_config
from agent.errors import ConfigError
from agent.nlu.config import ValueSpec

ACTUATOR = """
agent: {{id: a1}}
mqtt: {{host: 127.0.0.1}}
policies:
  - name: p
    every: 30s
    inputs: [k-1/temperature]
    actuators:
      - device: kitchen-light
        actuator: light
        actions: {actions}
        value: {value}
"""


def config(actions: str, value: str) -> str:
    return ACTUATOR.format(actions=actions, value=value)


def test_range_belongs_to_the_actions_that_take_a_value() -> None:
    assert value_actions(["on", "off", "brightness"], None) == ["brightness"]
    assert value_actions(["cool", "heat", "off"], None) == ["cool", "heat"]
    assert value_actions(["on", "off"], None) == ["on"]  # legacy dimmable light: a level
    assert value_actions(["on", "off", "brightness"], ["brightness"]) == ["brightness"]


def test_on_and_off_never_need_a_value() -> None:
    for action in ("on", "off", "open", "close", "lock", "unlock"):
        assert not value_required(action, [action])
    assert value_required("brightness", ["brightness"])
    assert not value_required("heat", ["heat"])  # the device keeps its setpoint (null on wire)


def test_configs_that_cannot_be_read_either_way() -> None:
    with pytest.raises(ValueError, match="none of the actions"):
        value_actions(["lock", "unlock"], None)
    with pytest.raises(ValueError, match="not among the actions"):
        ValueSpec(min=0, max=100, actions=["dim"]).for_actions(["on", "off"])
    with pytest.raises(ValueError, match="greater than max"):
        ValueSpec(min=10, max=0)
    with pytest.raises(ValueError, match="is empty"):
        ValueSpec(min=0, max=10, actions=[])


def test_agent_config_accepts_value_actions() -> None:
    cfg = parse_config(config('["on", "off", brightness]',
                              "{min: 0, max: 100, actions: [brightness]}"))
    act = cfg.policies[0].actuators[0]
    assert act.value is not None and act.value.actions == ["brightness"]


def test_agent_config_error_names_the_path() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(config('["on", "off"]', "{min: 0, max: 100, actions: [dim]}"))
    assert "policies[0].actuators[0]" in str(err.value)
    assert "value.actions: ['dim'] not among the actions" in str(err.value)
    with pytest.raises(ConfigError, match="none of the actions"):
        parse_config(config("[lock, unlock]", "{min: 0, max: 1}"))


def test_a_config_without_value_actions_keeps_running() -> None:
    cfg = parse_config(config('["on", "off"]', "{min: 0, max: 100}"))
    assert cfg.policies[0].actuators[0].value is not None
