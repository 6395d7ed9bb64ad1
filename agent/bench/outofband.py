"""Time out of band during a sensor fault, with and without diagnosis (part of bench diagnose).

The same seeded fault traces as the detection figures (firmware_sim.traces: one room, three
thermometers, a HVAC), but here the HVAC is driven the way a rules policy drives it: every
minute, from the latest in-range reading of ``room-1/temperature`` (the faulty series), above
the band -> cool, below -> heat (setpoint the band's middle), inside -> off; with no reading in
the last minute it decides nothing and the HVAC keeps its mode. Three runs per trace:

- ``without``: the policy acts on whatever the sensor says;
- ``pause, off``: the statistical detectors read every reading, are checked each minute, and
  while the series is faulty with a pausing fault the policy sends ``off`` once and decides
  nothing (the agent's default safe action), resuming when the series is healthy;
- ``pause, hold``: the same, but the safe action is ``hold`` (nothing is sent).

Out of band is the room's true temperature (the simulated air, not any sensor) outside the
band, counted in simulated minutes from the fault's onset to its end (the trace's end for a
fault that does not stop).
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.bench.diagnose import LAYOUT, SENSORS
from agent.config import PAUSING_FAULTS
from agent.diagnosis.fleet import Diagnoser
from agent.diagnosis.intake import Measured, measured
from agent.policy.signing import make_command
from firmware_sim.house import House
from firmware_sim.scenario import scenario_from
from firmware_sim.traces import EPOCH, KEY, SENSOR_KINDS, SIZES, SUSPECT, label_of, room

BAND = (20.0, 24.0)
EVERY = 60.0  # the policy decides, and the detectors are checked, once a simulated minute
MODES = ("without", "off", "hold")  # no diagnosis; paused with safe action off; with hold
KINDS = tuple(k for k in SENSOR_KINDS if k in PAUSING_FAULTS)


@dataclass(slots=True)
class Run:
    """One trace under one mode: minutes out of band during the fault, and minutes paused."""

    out_of_band: float = 0.0
    paused: float = 0.0


class _Policy:
    """The rules policy on ``room-1/temperature``, with or without the pause."""

    def __init__(self, house: House, mode: str) -> None:
        self.house, self.mode = house, mode
        self.diag = Diagnoser(LAYOUT, EPOCH)
        self.last: tuple[float, float] | None = None  # (t, value) of the last in-range reading
        self.sent: str | None = None
        self.paused = False

    def read(self, t: float, topic: str, payload: bytes) -> None:
        got = measured(topic, payload, t, prefix="edge", max_bytes=4096, sensors=SENSORS)
        if not isinstance(got, Measured):
            if got is not None:
                self.diag.seen(got[0], got[1], t)
            return
        self.diag.reading(got.device, got.quantity, got.ts, got.value, got.in_range)
        if f"{got.device}/{got.quantity}" == SUSPECT and got.in_range:
            self.last = (t, got.value)

    def decide(self, t: float) -> None:
        if self.mode != "without":
            self.diag.check(t)
            health = self.diag.faulty(SUSPECT)
            self.paused = health is not None and health.fault in PAUSING_FAULTS
            if self.paused:
                if self.mode == "off":
                    self._send(t, "off")
                return
        if self.last is None or t - self.last[0] > EVERY:
            return  # no recent reading: no decision
        value = self.last[1]
        self._send(t, "cool" if value > BAND[1] else "heat" if value < BAND[0] else "off")

    def _send(self, t: float, action: str) -> None:
        if action == self.sent:
            return
        self.sent = action
        setpoint = None if action == "off" else (BAND[0] + BAND[1]) / 2
        command = make_command(device="room-hvac", actuator="hvac", action=action,
                               value=setpoint, policy="climate", agent="bench", reason="",
                               key=KEY, now=t, ttl=30)
        self.house.actuators["room-hvac/hvac"].handle(command)


def run_trace(kind: str, seed: int, size: float, mode: str, hours: float = 24.0) -> Run:
    # the same onset as firmware_sim.traces.trace draws for this seed
    onset = round(random.Random(f"onset:{seed}").uniform(3 * 3600, 14 * 3600) / 60) * 60
    label = label_of(kind, size, onset, hours)
    assert label is not None
    clock = [EPOCH]
    house = House(scenario_from(room(kind, size, onset, seed)), key=KEY,
                  wall_clock=lambda: clock[0])
    policy = _Policy(house, mode)
    run = Run()
    next_decision = EPOCH + EVERY
    while house.world.t < hours * 3600:
        messages = house.tick()
        t = clock[0] = EPOCH + house.world.t
        for m in messages:
            if "/sensors/" in m.topic:
                policy.read(t, m.topic, m.payload)
        while t >= next_decision:
            policy.decide(next_decision)
            next_decision += EVERY
            if label.onset <= next_decision - EVERY < label.end:
                air = house.world.rooms["room"].temperature
                run.out_of_band += not BAND[0] <= air <= BAND[1]
                run.paused += policy.paused
    return run


@dataclass(slots=True)
class Table:
    runs: dict[tuple[str, str], list[Run]] = field(default_factory=dict)

    def add(self, kind: str, mode: str, run: Run) -> None:
        self.runs.setdefault((kind, mode), []).append(run)

    def lines(self) -> list[str]:
        out = [f"{'fault':<13} {'traces':>6} " + " ".join(
            f"{label:>13}" for label in ("oob without", "oob pause/off", "oob pause/hold"))
            + f" {'paused':>7}   (median minutes out of {BAND[0]:g}-{BAND[1]:g} C during the "
              "fault, simulated)"]
        for kind in KINDS:
            runs = {m: self.runs.get((kind, m), []) for m in MODES}
            cells = [statistics.median(r.out_of_band for r in runs[m]) if runs[m]
                     else float("nan") for m in MODES]
            paused = (statistics.median(r.paused for r in runs["off"]) if runs["off"]
                      else float("nan"))
            out.append(f"{kind:<13} {len(runs['without']):>6} "
                       + " ".join(f"{c:>13.0f}" for c in cells) + f" {paused:>7.0f}")
        totals = [sum(r.out_of_band for k in KINDS for r in self.runs.get((k, m), []))
                  for m in MODES]
        out.append("total minutes out of band: " + ", ".join(
            f"{m} {v:.0f}" for m, v in zip(("without", "pause/off", "pause/hold"), totals,
                                           strict=True)))
        return out


def run_outofband(seeds: int = 10, hours: float = 24.0, first_seed: int = 900_000,
                  echo: Callable[[str], None] = print) -> Table:
    """Held-out seeds and fault sizes, as the detection figures use."""
    table = Table()
    for kind in KINDS:
        sizes = SIZES[kind][1]
        for i in range(seeds):
            for mode in MODES:
                table.add(kind, mode, run_trace(kind, first_seed + 1000 + i,
                                                sizes[i % len(sizes)], mode, hours))
    echo(f"time out of band during a sensor fault, rules policy on the faulty series: without "
         f"diagnosis, paused with off, paused with hold ({seeds} traces per fault)")
    for line in table.lines():
        echo(line)
    return table
