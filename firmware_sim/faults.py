"""Actuator faults: an HVAC whose compressor is dead, a relay that ignores commands, a valve
stuck in one position. From ``at`` (simulated time) on, the firmware still takes commands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from firmware_sim.physics import Controls

FaultKind = Literal["dead", "ignore", "stuck"]
IGNORED = "ignored (fault)"


@dataclass(frozen=True, slots=True)
class ActuatorFault:
    """``dead``: reports every command as done, changes nothing (a dead compressor);
    ``ignore``: takes commands and does nothing, not even report (a relay gone deaf);
    ``stuck``: stays in ``action`` and reports it (a valve stuck open)."""

    kind: FaultKind
    at: float = 0.0
    action: str | None = None

    def __post_init__(self) -> None:
        if (self.kind == "stuck") != (self.action is not None):
            raise ValueError("a stuck actuator names the action it is stuck in, and only it")


def outcome(
    fault: ActuatorFault, action: str, value: float | None
) -> tuple[str, float | None, bool]:
    """What a faulty actuator reports for a command, and whether it acts on the room."""
    if fault.kind == "stuck":
        assert fault.action is not None
        return fault.action, None, True
    return action, value, fault.kind != "dead"


def broken(fault: ActuatorFault, actuator: str, controls: Controls) -> None:
    """The moment the fault sets in: a dead HVAC stops, a stuck valve goes where it sticks."""
    if fault.kind == "dead" and actuator == "hvac":
        controls.hvac_mode = "off"
    if fault.kind == "stuck" and actuator == "valve":
        controls.valve = 100.0 if fault.action == "open" else 0.0


@dataclass(frozen=True, slots=True)
class LateFault:
    """A sensor fault that sets in at ``at`` (simulated time): ``spikes`` (probability ``rate``
    per reading, of ``size``), ``noise`` (extra standard deviation ``size``), ``glitch`` (with
    probability ``rate`` the reading is ``size``, an impossible value), ``unit`` (the firmware
    sends Fahrenheit, or ``size`` times the value, without saying so)."""

    kind: Literal["spikes", "noise", "glitch", "unit"]
    at: float
    size: float = 0.0
    rate: float = 0.0


def late_value(fault: LateFault, value: float, t: float, draw: float, gauss: float,
               sign: int, quantity: str) -> float:
    """``value`` as the faulty sensor reports it at ``t``; ``draw`` uniform in [0, 1),
    ``gauss`` standard normal and ``sign`` +-1, drawn by the caller's seeded generator."""
    if t < fault.at:
        return value
    if fault.kind == "spikes":
        return value + sign * fault.size if draw < fault.rate else value
    if fault.kind == "noise":
        return value + gauss * fault.size
    if fault.kind == "glitch":
        return fault.size if draw < fault.rate else value
    if quantity == "temperature" and not fault.size:
        return value * 1.8 + 32
    return value * (fault.size or 1.0)
