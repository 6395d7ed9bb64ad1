"""Simulated actuators on a real broker: only signed, fresh, unseen, sensible commands change a
room; everything else is refused with its reason and counted (SPEC 4 and 5)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agent.broker import Mosquitto, free_port
from agent.errors import BrokerError
from agent.policy.signing import NonceMemory
from firmware_sim.actuators import Actuator, ActuatorSpec
from firmware_sim.house import House
from firmware_sim.physics import Controls
from tests.conftest import Collector, wait_for
from tests.helpers import COMMAND_KEY, signed_command

KEY = COMMAND_KEY
OTHER_KEY = b"fedcba9876543210fedcba9876543210"
HVAC_SET = "edge/actuators/room-hvac/hvac/set"
HVAC_STATE = "edge/actuators/room-hvac/hvac/state"
SCENARIO: dict[str, Any] = {
    "name": "one-room",
    "seed": 7,
    "rooms": {
        "room": {
            "temperature": 26,
            "target": [20, 24],
            "sensors": [{"device": "room-1", "quantities": ["temperature"], "every": "1m"}],
            "actuators": [
                {"device": "room-hvac", "actuator": "hvac", "value": 21},
                {"device": "room-light", "actuator": "light"},
                {"device": "room-door", "actuator": "lock"},
            ],
        }
    },
}

pytestmark = pytest.mark.broker


def command(**kw: Any) -> dict[str, object]:
    return signed_command(**{"key": KEY, "device": "room-hvac", "agent": "test-agent",
                                  "reason": "too warm", **kw})


def send(collector: Collector, cmd: dict[str, object] | bytes, topic: str = HVAC_SET) -> None:
    payload = cmd if isinstance(cmd, bytes) else json.dumps(cmd).encode()
    collector.publish(topic, payload).wait_for_publish(10)


@pytest.fixture
def house(broker: Mosquitto) -> Iterator[House]:
    with House.from_scenario(SCENARIO, "127.0.0.1", broker.port, key=KEY, speed=60) as h:
        yield h


@pytest.fixture
def states(
    broker: Mosquitto, house: House, collector_factory: Callable[..., Collector]
) -> Collector:
    c = collector_factory(broker.port, "edge/actuators/#")
    wait_for(lambda: len(c.on(HVAC_STATE)) >= 1, 10, "the retained initial state")
    return c


def total(house: House, key: str = "room-hvac/hvac") -> int:
    act = house.snapshot().actuators[key]
    return act.accepted + sum(act.rejected.values())


def test_every_actuator_publishes_its_initial_state_retained(states: Collector) -> None:
    wait_for(lambda: len({t for t, _, _ in states.messages if t.endswith("/state")}) == 3, 10)
    for device, actuator, action, value in [
        ("room-hvac", "hvac", "off", 21.0),
        ("room-light", "light", "off", None),
        ("room-door", "lock", "lock", None),
    ]:
        (state,) = states.on(f"edge/actuators/{device}/{actuator}/state")
        assert (state["action"], state["value"], state["command_id"]) == (action, value, None)
        assert state["ts"] == pytest.approx(time.time(), abs=60)
    assert all(retain for t, _, retain in states.messages if t.endswith("/state"))


def test_a_valid_command_is_applied_and_its_state_published(
    house: House, states: Collector
) -> None:
    cmd = command(action="cool", value=22.0)
    send(states, cmd)
    wait_for(lambda: len(states.on(HVAC_STATE)) >= 2, 10, "the new state")
    state = states.on(HVAC_STATE)[-1]
    assert (state["action"], state["value"], state["command_id"]) == ("cool", 22.0, cmd["id"])
    controls = house.world.rooms["room"].controls
    assert (controls.hvac_mode, controls.setpoint) == ("cool", 22.0)
    snap = house.snapshot()
    assert snap.actuators["room-hvac/hvac"].accepted == 1
    assert snap.rooms["room"].hvac is not None and snap.rooms["room"].hvac.command_id == cmd["id"]
    assert [(c.device, c.action, c.value, c.command_id) for c in house.commands] == [
        ("room-hvac", "cool", 22.0, cmd["id"])
    ]


def test_the_command_changes_what_the_room_does(
    broker: Mosquitto, collector_factory: Callable[..., Collector]
) -> None:
    fast = House.from_scenario(SCENARIO, "127.0.0.1", broker.port, key=KEY, speed=7200)
    with fast:
        c = collector_factory(broker.port, "edge/actuators/#")
        wait_for(lambda: len(c.on(HVAC_STATE)) >= 1, 10)
        send(c, command(action="cool", value=20.0))
        wait_for(lambda: len(c.on(HVAC_STATE)) >= 2, 10)
        start = fast.sim_time
        assert fast.wait(start + 3600, timeout=60)
    room = fast.world.rooms["room"]
    assert room.temperature < 25.0  # started at 26 with the sun out, cooling to 20
    assert room.controls.hvac_mode == "cool"


def test_bad_commands_are_rejected_with_their_reason_and_counted(
    house: House, states: Collector
) -> None:
    good = command()
    unsigned = {k: v for k, v in command().items() if k != "sig"}
    empty_sig = {**command(), "sig": ""}
    tampered = {**command(value=22.0), "value": 28.0}
    now = time.time()
    cases: list[tuple[dict[str, object] | bytes, str]] = [
        (unsigned, "malformed"),
        (empty_sig, "bad signature"),
        (command(key=OTHER_KEY), "bad signature"),
        (tampered, "bad signature"),
        (command(now=now - 120, ttl=30), "expired"),
        (command(now=now + 600, ttl=30), "not yet valid"),
        (command(action="defrost"), "unknown action"),
        (command(value=45.0), "out of range"),
        (command(value=float(15)), "out of range"),
        (command(device="other-hvac"), "wrong device"),
        (b"\xff not json", "malformed"),
        (good, ""),  # accepted
        (good, "replayed"),
    ]
    for cmd, _ in cases:
        send(states, cmd)
    wait_for(lambda: total(house) == len(cases), 10, "every command handled")
    act = house.snapshot().actuators["room-hvac/hvac"]
    expected: dict[str, int] = {}
    for _, reason in cases:
        if reason:
            expected[reason] = expected.get(reason, 0) + 1
    assert act.rejected == expected
    assert act.accepted == 1
    assert [r.reason for r in house.rejections] == [r for _, r in cases if r]
    wait_for(lambda: len(states.on(HVAC_STATE)) >= 2, 10)
    assert [s["command_id"] for s in states.on(HVAC_STATE)] == [None, good["id"]]


def test_nonces_are_remembered_across_other_commands(house: House, states: Collector) -> None:
    first = command(nonce="a1b2c3d4e5f60718", action="cool", value=23.0)
    send(states, first)
    send(states, command(action="heat", value=21.0))
    # the same nonce under a new id and a fresh signature is still a replay
    send(states, command(nonce="a1b2c3d4e5f60718", action="off", value=21.0))
    send(states, first)
    wait_for(lambda: total(house) == 4, 10)
    act = house.snapshot().actuators["room-hvac/hvac"]
    assert (act.accepted, act.rejected) == (2, {"replayed": 2})
    assert act.state.action == "heat"


def test_kinds_take_their_own_actions_and_values(house: House, states: Collector) -> None:
    light = "edge/actuators/room-light/light/set"
    door = "edge/actuators/room-door/lock/set"
    send(states, command(device="room-light", actuator="light", action="on", value=60.0), light)
    send(states, command(device="room-light", actuator="light", action="cool", value=1.0), light)
    send(states, command(device="room-light", actuator="light", action="on", value=101.0), light)
    send(states, command(device="room-door", actuator="lock", action="unlock", value=None), door)
    send(states, command(device="room-door", actuator="lock", action="lock", value=1.0), door)
    wait_for(lambda: total(house, "room-light/light") == 3, 10)
    wait_for(lambda: total(house, "room-door/lock") == 2, 10)
    snap = house.snapshot()
    light_act, door_act = snap.actuators["room-light/light"], snap.actuators["room-door/lock"]
    assert light_act.rejected == {"unknown action": 1, "out of range": 1}
    assert door_act.rejected == {"out of range": 1}
    controls = house.world.rooms["room"].controls
    assert (controls.light, controls.locked) == (60.0, False)


def test_a_person_overrides_with_no_command_id(house: House, states: Collector) -> None:
    house.override("room-light", "light", "on", 40.0)
    topic = "edge/actuators/room-light/light/state"
    wait_for(lambda: len(states.on(topic)) >= 2, 10)
    assert states.on(topic)[-1] | {"ts": 0} == {
        "action": "on",
        "value": 40.0,
        "ts": 0,
        "command_id": None,
    }
    assert house.commands[-1].command_id is None
    assert house.world.rooms["room"].controls.light == 40.0
    with pytest.raises(ValueError, match="unknown action"):
        house.override("room-light", "light", "dim")


def test_an_unreachable_broker_is_a_clear_error() -> None:
    house = House.from_scenario(SCENARIO, "127.0.0.1", free_port(), key=KEY)
    with pytest.raises(BrokerError, match=r"cannot reach the MQTT broker at 127\.0\.0\.1:"):
        house.start()


# -- the firmware without a broker: the clock is ours ------------------------------------------


def test_expiry_follows_the_actuator_clock() -> None:
    now = [1_800_000_000.0]
    act = Actuator(ActuatorSpec("room-hvac", "hvac"), KEY, clock=lambda: now[0])
    cmd = command(now=now[0], ttl=30)
    now[0] += 31
    assert act.handle(cmd) == "expired"
    now[0] -= 31 + 30  # 30 s early is still inside the skew
    assert act.handle(cmd) is None
    assert act.state.ts == now[0]


def test_nonces_are_forgotten_only_after_their_command_expired() -> None:
    now = [1_800_000_000.0]
    nonces = NonceMemory()
    act = Actuator(ActuatorSpec("room-hvac", "hvac"), KEY, clock=lambda: now[0], nonces=nonces)
    cmd = command(now=now[0], ttl=30)
    assert act.handle(cmd) is None
    now[0] += 29
    assert act.handle(cmd) == "replayed"
    assert cmd["nonce"] in nonces
    now[0] += 2
    assert act.handle(cmd) == "expired"  # and never "accepted" again


def test_levels_and_setpoints_reach_the_room() -> None:
    controls = Controls()
    fan = Actuator(ActuatorSpec("f", "fan"), KEY, controls=controls)
    valve = Actuator(ActuatorSpec("v", "valve", action="open", value=30.0), KEY, controls=controls)
    assert controls.valve == 30.0  # the initial state applies too
    assert fan.handle(command(device="f", actuator="fan", action="on", value=None)) is None
    assert controls.fan == 100.0  # no value: full power
    assert valve.handle(command(device="v", actuator="valve", action="close", value=None)) is None
    assert controls.valve == 0.0


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"actuator": "toaster"}, "actuator must be one of"),
        ({"actuator": "lock", "range": (0.0, 1.0)}, "takes no value"),
        ({"actuator": "hvac", "range": (30.0, 16.0)}, "low < high"),
        ({"actuator": "light", "action": "cool"}, "starts in one of on, off"),
        ({"actuator": "hvac", "value": 40.0}, "outside the range"),
    ],
)
def test_specs_check_themselves(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ActuatorSpec("d", **kw)


def test_the_house_comes_back_after_a_broker_outage(
    broker: Mosquitto, house: House, collector_factory: Callable[..., Collector]
) -> None:
    broker.restart()  # what the broker-outage scenario asks a demo to do
    c = collector_factory(broker.port, "edge/actuators/#", "edge/sensors/#")
    wait_for(lambda: house.connected, 20, "the house to reconnect")
    cmd = command(action="heat", value=23.0)
    send(c, cmd)
    wait_for(lambda: any(s["command_id"] == cmd["id"] for s in c.on(HVAC_STATE)), 20)
    wait_for(lambda: bool(c.on("edge/sensors/room-1/temperature")), 20, "readings again")
