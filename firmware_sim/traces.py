"""Labelled traces for diagnosis: one simulated room for a day, healthy or with one known
fault of a given size from a given time, with a thermostat and switches that send signed
commands. What a benchmark (and a trainer) of fault detectors reads."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from agent.policy.signing import make_command
from firmware_sim.actuators import Actuator
from firmware_sim.house import House
from firmware_sim.scenario import scenario_from

SENSOR_KINDS = ("silent", "stuck", "drift", "spiky", "noisy", "out_of_range", "wrong_unit")
ACTUATOR_KINDS = ("no_effect", "no_ack", "contradicts", "fighting")
KINDS = (*SENSOR_KINDS, *ACTUATOR_KINDS)
KEY = b"traces-are-signed-like-the-rest!"
SUSPECT = "room-1/temperature"
EPOCH = 1.8e9  # simulated second 0 as a wall-clock time (2027-01-15), in every timestamp
#: fault sizes: the sizes a trainer may use, and the sizes held out for the benchmark
SIZES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "silent": ((1.5, 3.0), (2.0, 4.0)),  # hours offline
    "stuck": ((2.0, 5.0), (3.0, 4.0)),  # hours stuck
    "drift": ((1.5, 3.0), (1.0, 2.0)),  # degrees per hour
    "spiky": ((6.0, 10.0), (4.0, 8.0)),  # spike size in degrees (5% of readings)
    "noisy": ((1.0, 2.0), (0.6, 1.5)),  # extra noise, standard deviation in degrees
    "out_of_range": ((0.1, 0.3), (0.05, 0.2)),  # share of impossible readings
    "wrong_unit": ((0.0,), (0.0,)),  # Fahrenheit sent as Celsius
    "no_effect": ((0.0,), (0.0,)),
    "no_ack": ((0.0,), (0.0,)),
    "contradicts": ((0.0,), (0.0,)),
    "fighting": ((2.0,), (3.0,)),  # minutes after each command a person switches back
}


@dataclass(frozen=True, slots=True)
class Label:
    kind: str
    key: str  # device/quantity or device/actuator
    onset: float  # wall-clock, EPOCH at the start of the trace
    end: float


@dataclass(frozen=True, slots=True)
class Event:
    """``what`` is "reading" (topic, payload), "state" (device, actuator, action, value,
    command_id) or "command" (device, actuator, id, action, value, ttl); ``t`` is EPOCH plus
    the simulated seconds, also the timestamp in readings."""

    t: float
    what: str
    data: tuple[Any, ...]


def _sensor_faults(kind: str | None, size: float, at: float) -> dict[str, Any]:
    if kind == "silent":
        return {"offline": [{"at": f"{at}s", "for": f"{size}h"}]}
    if kind == "stuck":
        return {"stuck": {"at": f"{at}s", "for": f"{size}h"}}
    if kind == "drift":
        return {"drift": {"at": f"{at}s", "per_hour": size}}
    late = {"spiky": ("spikes", size, 0.05), "noisy": ("noise", size, 0.0),
            "out_of_range": ("glitch", -127.0, size), "wrong_unit": ("unit", 0.0, 0.0)}
    if kind in late:
        name, value, rate = late[kind]
        return {"late": [{"kind": name, "at": f"{at}s", "size": value, "rate": rate}]}
    return {}


def room(kind: str | None, size: float, at: float, seed: int) -> dict[str, Any]:
    """The scenario of one trace: a room with three thermometers, a HVAC, a lamp and a valve."""
    rng = random.Random(f"room:{seed}")
    noise = rng.uniform(0.03, 0.15)
    faults = {"noise": noise, "dropouts": 0.03, **_sensor_faults(kind, size, at)}
    act_fault = {"no_effect": ("hvac", {"kind": "dead", "at": f"{at}s"}),
                 "no_ack": ("light", {"kind": "ignore", "at": f"{at}s"}),
                 "contradicts": ("valve", {"kind": "stuck", "at": f"{at}s", "action": "open"})}
    actuators: list[dict[str, Any]] = [
        {"device": "room-hvac", "actuator": "hvac", "range": [16, 30], "value": 21},
        {"device": "room-light", "actuator": "light"},
        {"device": "room-valve", "actuator": "valve"},
    ]
    for a in actuators:
        if kind in act_fault and act_fault[kind][0] == a["actuator"]:
            a["fault"] = act_fault[kind][1]
    return {
        "name": f"trace-{kind or 'healthy'}-{seed}",
        "seed": seed,
        "start": f"{rng.randrange(24):02d}:00",
        "tick": "30s",
        "weather": {"min_c": rng.uniform(-2, 14), "max_c": rng.uniform(16, 32),
                    "humidity": rng.uniform(40, 80)},
        "rooms": {"room": {
            "temperature": rng.uniform(18, 24),
            "humidity": rng.uniform(35, 60),
            "co2": rng.uniform(450, 900),
            "physics": {"volume_m3": rng.uniform(30, 80), "heat_capacity_j_per_k": 5e6,
                        "ua_w_per_k": rng.uniform(40, 90), "hvac_power_w": 3000,
                        "occupancy": [{"start": 7, "end": 9, "people": 2},
                                      {"start": 18, "end": 23, "people": rng.randint(1, 4)}]},
            "sensors": [
                {"device": "room-1", "quantities": ["temperature", "humidity", "co2", "motion"],
                 "every": "1m", "faults": {"temperature": faults,
                                           "humidity": {"noise": 0.3, "dropouts": 0.03},
                                           "co2": {"noise": 8}}},
                *({"device": other, "quantities": ["temperature"], "every": "1m",
                   "faults": {"temperature": {"noise": rng.uniform(0.03, 0.15),
                                              "dropouts": 0.03}}}
                  for other in ("room-2", "room-3")),
            ],
            "actuators": actuators,
        }},
    }


def label_of(kind: str | None, size: float, at: float, hours: float) -> Label | None:
    if kind is None:
        return None
    key = {"no_effect": "room-hvac/hvac", "no_ack": "room-light/light",
           "contradicts": "room-valve/valve", "fighting": "room-light/light"}.get(kind, SUSPECT)
    end = at + size * 3600 if kind in ("silent", "stuck") else hours * 3600
    return Label(kind, key, EPOCH + at, EPOCH + end)


class _Controller:
    """A thermostat for the HVAC and timers for the lamp and the valve, sending signed
    commands; with ``fight`` minutes, a person switches the lamp back after each command."""

    def __init__(self, house: House, fight: float | None) -> None:
        self.house, self.fight = house, fight
        self.mode = "off"
        self.overrides: list[tuple[float, str]] = []

    def step(self, t: float) -> list[Event]:
        out: list[Event] = []
        temp = self.house.world.rooms["room"].temperature
        mode = "heat" if temp < 21.0 else "cool" if temp > 24.5 else self.mode
        if (self.mode == "heat" and temp > 22.5) or (self.mode == "cool" and temp < 23.0):
            mode = "off"
        if mode != self.mode and int(t - EPOCH) % 300 == 0:
            self.mode = mode
            out += self.send(t, "room-hvac", "hvac", mode, {"heat": 23.0, "cool": 22.0}.get(mode))
        if int(t - EPOCH) % 2700 == 0:
            light = self.house.actuators["room-light/light"]
            action = "off" if light.state.action == "on" else "on"
            out += self.send(t, "room-light", "light", action, 60.0 if action == "on" else None)
            if self.fight is not None:
                self.overrides.append((t + self.fight * 60, "on" if action == "off" else "off"))
        if int(t - EPOCH) % 5400 == 0:
            valve = self.house.actuators["room-valve/valve"]
            action = "close" if valve.state.action == "open" else "open"
            out += self.send(t, "room-valve", "valve", action, None)
        out += self._people(t)
        return out

    def _people(self, t: float) -> list[Event]:
        out: list[Event] = []
        while self.overrides and self.overrides[0][0] <= t:
            _, action = self.overrides.pop(0)
            act = self.house.actuators["room-light/light"]
            act.override(action)
            out.append(_state(t, act))
        return out

    def send(self, t: float, device: str, actuator: str, action: str,
             value: float | None) -> list[Event]:
        command = make_command(device=device, actuator=actuator, action=action, value=value,
                               policy="trace", agent="trace", reason="", key=KEY, now=t, ttl=30)
        act = self.house.actuators[f"{device}/{actuator}"]
        out = [Event(t, "command", (device, actuator, command["id"], action, value, 30.0))]
        if act.handle(command) is None:
            out.append(_state(t + 1, act))
        return out


def _state(t: float, act: Actuator) -> Event:
    s = act.state
    return Event(t, "state", (act.spec.device, act.spec.actuator, s.action, s.value, s.command_id))


def trace(kind: str | None, seed: int, size: float = 0.0, at: float | None = None,
          hours: float = 24.0) -> tuple[Label | None, Iterator[Event]]:
    """A labelled trace: its label (None when healthy) and its events in time order."""
    onset = random.Random(f"onset:{seed}").uniform(3 * 3600, 14 * 3600) if at is None else at
    onset = round(onset / 60) * 60
    label = label_of(kind, size, onset, hours)
    scenario = scenario_from(room(kind, size, onset, seed))
    return label, _events(scenario, kind, size, onset, hours)


def _events(scenario: Any, kind: str | None, size: float, onset: float,
            hours: float) -> Iterator[Event]:
    clock: list[float] = [EPOCH]
    now: Callable[[], float] = lambda: clock[0]  # noqa: E731
    house = House(scenario, key=KEY, wall_clock=now)
    control = _Controller(house, size if kind == "fighting" else None)
    fight_from = onset if kind == "fighting" else None
    while house.world.t < hours * 3600:
        messages = house.tick()
        sim = house.world.t
        t = clock[0] = EPOCH + sim
        if fight_from is not None and sim < fight_from:
            control.fight = None
        elif fight_from is not None:
            control.fight = size
        for m in messages:
            if m.topic.endswith("/state"):
                continue  # people's events (none here)
            yield Event(t, "reading", (m.topic, m.payload))
        yield from control.step(t)
