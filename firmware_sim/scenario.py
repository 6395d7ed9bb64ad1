"""Scenario files: a simulated home, its weather, faults, people and outages, as validated YAML.

A scenario fixes the random seed, so a run repeats. Unknown keys are errors and every error is
reported with its path (``rooms.kitchen.sensors[0].faults.temperature.noise: ...``), the way
``agent.config`` reports the agent's own configuration. Times inside a run (``at``, ``for``,
``every``) are simulated time since the start, written as durations (``"90s"``, ``"2h"``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from agent.config import parse_duration, validate_yaml, validation_errors
from agent.errors import ConfigError
from firmware_sim.actuators import ActuatorSpec, valid_value
from firmware_sim.faults import ActuatorFault, LateFault
from firmware_sim.physics import RoomParams, Weather

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "config" / "scenarios"
QUANTITIES = ("temperature", "humidity", "light", "co2", "motion", "power")
UNITS: dict[str, str | None] = {
    "temperature": "C",
    "humidity": "%",
    "light": "lx",
    "co2": "ppm",
    "motion": None,
    "power": "W",
}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_CLOCK = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")
_WORD = re.compile(r"^[^/+#\s]+$")


class ScenarioError(ConfigError):
    """A scenario file is unusable; ``errors`` holds every problem with its path."""


def parse_offset(value: object) -> float:
    """Simulated time since the start: ``"0s"``, ``"90s"``, ``"2h"``, ``"12h30m"``."""
    if isinstance(value, str):
        parts = list(_PART.finditer(value))
        if parts and "".join(p.group(0) for p in parts).strip() == value.strip():
            return sum(float(p.group(1)) * _UNITS[p.group(2)] for p in parts)
    return parse_duration(value)  # raises with the agent's own message


def parse_span(value: object) -> float:
    """A positive duration; like :func:`parse_offset` but not zero."""
    seconds = parse_offset(value)
    if seconds <= 0:
        raise ValueError(f"duration must be greater than 0, got {value!r}")
    return seconds


def parse_clock(value: object) -> float:
    """``"07:30"`` -> 7.5 (hours)."""
    match = _CLOCK.match(value) if isinstance(value, str) else None
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f'time of day must be "HH:MM" from 00:00 to 23:59, got {value!r}')
    return int(match.group(1)) + int(match.group(2)) / 60


def _word(value: object) -> object:
    if isinstance(value, str) and not _WORD.match(value):
        raise ValueError(
            f"must be one MQTT topic level without '/', '+', '#' or spaces, got {value!r}"
        )
    return value


Duration = Annotated[float, BeforeValidator(parse_span)]
Offset = Annotated[float, BeforeValidator(parse_offset)]
Clock = Annotated[float, BeforeValidator(parse_clock)]
Word = Annotated[str, BeforeValidator(_word)]
Probability = Annotated[float, Field(ge=0, le=1)]
Quantity = Literal["temperature", "humidity", "light", "co2", "motion", "power"]
ActuatorKind = Literal["hvac", "light", "fan", "valve", "lock"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Window(_Strict):
    """A period of simulated time: from ``at`` for ``for``."""

    at: Offset
    length: Duration = Field(alias="for")

    @property
    def span(self) -> tuple[float, float]:
        return (self.at, self.at + self.length)


class Drift(_Strict):
    """From ``at`` on, the reading is off by an offset that grows by ``per_hour``."""

    at: Offset = 0.0
    per_hour: float


class LateFaultModel(_Strict):
    """A fault that sets in at ``at``: spikes, noise, glitch (impossible values) or unit."""

    kind: Literal["spikes", "noise", "glitch", "unit"]
    at: Offset
    size: float = 0.0
    rate: Probability = 0.0

    def fault(self) -> LateFault:
        return LateFault(self.kind, self.at, self.size, self.rate)


class Faults(_Strict):
    """How one quantity of a sensor misbehaves; probabilities are per reading."""

    noise: float = Field(default=0.0, ge=0)  # standard deviation, in the quantity's unit
    spikes: Probability = 0.0
    spike_size: float = 10.0
    dropouts: Probability = 0.0
    offline: list[Window] = Field(default_factory=list)
    stuck: Window | None = None
    drift: Drift | None = None
    fahrenheit: bool = False
    bare: Probability = 0.0
    duplicates: Probability = 0.0
    malformed: Probability = 0.0
    late: list[LateFaultModel] = Field(default_factory=list)


class SensorModel(_Strict):
    device: Word
    quantities: list[Quantity] = Field(min_length=1)
    every: Duration = 60.0
    faults: dict[Quantity, Faults] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> SensorModel:
        if len(set(self.quantities)) != len(self.quantities):
            raise ValueError("quantities must not repeat")
        extra = sorted(set(self.faults) - set(self.quantities))
        if extra:
            raise ValueError(f"faults for quantities this sensor does not send: {', '.join(extra)}")
        if any(f.fahrenheit for q, f in self.faults.items() if q != "temperature"):
            raise ValueError("fahrenheit applies to temperature only")
        return self


class ActuatorFaultModel(_Strict):
    """From ``at`` on: ``dead`` (reports, does nothing), ``ignore`` (neither), ``stuck`` (stays
    in ``action``)."""

    kind: Literal["dead", "ignore", "stuck"]
    at: Offset = 0.0
    action: str | None = None

    def fault(self) -> ActuatorFault:
        return ActuatorFault(self.kind, self.at, self.action)


class ActuatorModel(_Strict):
    device: Word
    actuator: ActuatorKind
    range: tuple[float, float] | None = None
    action: str | None = None  # the state it starts in (the kind's resting state by default)
    value: float | None = None
    fault: ActuatorFaultModel | None = None

    @model_validator(mode="after")
    def _spec(self) -> ActuatorModel:
        spec = self.spec()  # ActuatorSpec checks itself; its ValueError becomes a validation error
        if self.fault is not None:
            fault = self.fault.fault()  # checks itself too
            if fault.action is not None and fault.action not in spec.kind.actions:
                raise ValueError(f"fault.action: a {self.actuator} does one of "
                                 f"{', '.join(spec.kind.actions)}, got {fault.action!r}")
        return self

    def spec(self) -> ActuatorSpec:
        return ActuatorSpec(self.device, self.actuator, self.range, self.action, self.value)


class RoomModel(_Strict):
    temperature: float = Field(default=21.0, ge=-50, le=60)  # at the start; outdoors: the weather
    humidity: float = Field(default=45.0, ge=0, le=100)  # relative %; outdoors: soil moisture %
    co2: float = Field(default=500.0, ge=0)
    target: tuple[float, float] | None = None  # the comfort band the demo measures
    physics: RoomParams = RoomParams()
    sensors: list[SensorModel] = Field(default_factory=list)
    actuators: list[ActuatorModel] = Field(default_factory=list)

    @model_validator(mode="after")
    def _band(self) -> RoomModel:
        if self.target is not None and not self.target[0] < self.target[1]:
            raise ValueError(f"target must be [low, high] with low < high, got {list(self.target)}")
        return self


class Event(_Strict):
    """A person changes an actuator at ``at``: the state changes with no command behind it."""

    at: Offset
    device: Word
    actuator: ActuatorKind
    action: str
    value: float | None = None


class Scenario(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    seed: int
    start: Clock = 0.0  # time of day when the run starts, "HH:MM"
    duration: Duration = 86400.0  # simulated time a run lasts unless told otherwise
    tick: Duration = 10.0  # physics step and the grain of every schedule
    record_every: Duration = 60.0  # temperature samples for the chart
    weather: Weather = Weather()
    rooms: dict[Word, RoomModel] = Field(min_length=1)
    events: list[Event] = Field(default_factory=list)
    outages: list[Window] = Field(default_factory=list)  # when a demo should cut the broker

    def actuator_faults(self) -> dict[str, ActuatorFault]:
        """``device/actuator`` -> the fault that sets in, for the actuators that have one."""
        return {
            f"{a.device}/{a.actuator}": a.fault.fault()
            for r in self.rooms.values()
            for a in r.actuators
            if a.fault is not None
        }

    def actuator_specs(self) -> dict[str, tuple[str, ActuatorSpec]]:
        """``device/actuator`` -> (room, spec)."""
        return {
            a.spec().key: (room, a.spec()) for room, r in self.rooms.items() for a in r.actuators
        }


def cross_check(scenario: Scenario) -> list[str]:
    """What a single model cannot see: devices in two rooms, a topic published twice, two
    actuators on one topic, events naming unknown actuators or actions."""
    errors: list[str] = []
    rooms: dict[str, str] = {}  # device -> its room
    seen: set[str] = set()
    for name, room in scenario.rooms.items():
        for i, sensor in enumerate(room.sensors):
            where = f"rooms.{name}.sensors[{i}]"
            if rooms.setdefault(sensor.device, name) != name:
                errors.append(f"{where}.device: {sensor.device} is in {rooms[sensor.device]}")
            for q in sensor.quantities:
                if f"{sensor.device}/{q}" in seen:
                    errors.append(f"{where}.quantities: {sensor.device}/{q} is sent twice")
                seen.add(f"{sensor.device}/{q}")
        for i, act in enumerate(room.actuators):
            key, where = f"{act.device}/{act.actuator}", f"rooms.{name}.actuators[{i}]"
            if rooms.setdefault(act.device, name) != name:
                errors.append(f"{where}.device: {act.device} is in {rooms[act.device]}")
            if key in seen:
                errors.append(f"{where}: {key} is there twice")
            seen.add(key)
    specs = scenario.actuator_specs()
    for i, event in enumerate(scenario.events):
        errors.extend(f"events[{i}].{e}" for e in _event_errors(event, specs))
    return errors


def _event_errors(event: Event, specs: dict[str, tuple[str, ActuatorSpec]]) -> list[str]:
    key = f"{event.device}/{event.actuator}"
    if key not in specs:
        return [f"device: no actuator {key} in any room"]
    spec = specs[key][1]
    if event.action not in spec.kind.actions:
        actions = ", ".join(spec.kind.actions)
        return [f"action: a {spec.actuator} does one of {actions}, got {event.action!r}"]
    if event.value is not None and valid_value(event.value, spec.value_range) is None:
        lo, hi = spec.value_range or (math.nan, math.nan)
        return [f"value: {event.value:g} is outside {spec.key}'s range [{lo:g}, {hi:g}]"]
    return []


def _validate(data: Any, tree: yaml.Node | None, source: str) -> Scenario:
    if not isinstance(data, Mapping):
        raise ScenarioError([f"{source}: the top level must be a mapping"])
    try:
        scenario = Scenario.model_validate(dict(data))
    except ValidationError as exc:
        raise ScenarioError(validation_errors(exc, tree)) from None
    return _checked(scenario)


def _checked(scenario: Scenario) -> Scenario:
    errors = cross_check(scenario)
    if errors:
        raise ScenarioError(errors)
    return scenario


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Validate YAML text; raise :class:`ScenarioError` with every problem and its path."""
    return _checked(validate_yaml(Scenario, text, source, ScenarioError))


def scenario_from(source: str | Path | Mapping[str, Any] | Scenario) -> Scenario:
    """A scenario from a file, a mapping of the file's content, or a ready :class:`Scenario`.

    A bare name like ``"heatwave"`` means ``config/scenarios/heatwave.yaml``."""
    if isinstance(source, Scenario):
        return source
    if isinstance(source, Mapping):
        return _validate(source, None, "<scenario>")
    path = Path(source)
    if not path.exists() and path.suffix == "" and len(path.parts) == 1:
        bundled = SCENARIO_DIR / f"{path}.yaml"
        if not bundled.exists():
            names = ", ".join(p.stem for p in bundled_scenarios())
            raise ScenarioError([f"{path}: no such file, nor a bundled scenario ({names})"])
        path = bundled
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError([f"{path}: cannot read: {exc}"]) from None
    return parse_scenario(text, str(path))


def bundled_scenarios() -> list[Path]:
    return sorted(SCENARIO_DIR.glob("*.yaml"))
