"""Actuator states are taken only from actuators a policy or interlock names (attack 6)."""

from __future__ import annotations

import json

from agent.config import Config
from agent.service.states import State, known_actuators, parse_state

CONFIG = Config.model_validate({
    "policies": [{
        "name": "climate", "inputs": ["room-1/temperature"],
        "actuators": [{"device": "room-hvac", "actuator": "hvac", "actions": ["cool", "off"]}],
    }],
    "interlocks": [
        {"name": "window", "never_together": ["room-hvac/hvac=cool", "room-window/valve=open"]},
        {"name": "leak", "when": "leak-1/water > 0.5", "then": "main/valve=close"},
    ],
})
KNOWN = known_actuators(CONFIG)
STATE = json.dumps({"action": "cool", "value": 22.0, "ts": 1.0, "command_id": "c1"}).encode()


def test_policies_and_interlocks_name_the_known_actuators() -> None:
    assert set(KNOWN) == {("room-hvac", "hvac"), ("room-window", "valve"), ("main", "valve")}


def test_a_state_of_a_known_actuator_is_taken() -> None:
    assert parse_state("edge/actuators/room-hvac/hvac/state", STATE, KNOWN) == State(
        "room-hvac", "hvac", "cool", 22.0, "c1")


def test_a_state_of_an_unknown_actuator_is_ignored() -> None:
    assert parse_state("edge/actuators/fake-1/hvac/state", STATE, KNOWN) is None


def test_malformed_states_are_ignored() -> None:
    topic = "edge/actuators/room-hvac/hvac/state"
    for payload in (b"[", b"[]", b"3", b'{"value": 1}', b'{"action": 3}', b"\xff"):
        assert parse_state(topic, payload, KNOWN) is None
    odd = parse_state(topic, b'{"action": "off", "value": NaN}', KNOWN)
    assert odd is not None and odd.value is None
