"""edge-agent bench diagnose: fault detection over seeded simulated days, per fault kind.

Each trace is one room for a day (firmware_sim.traces), healthy or with one fault of a size and
from a time that no training set uses. The statistical detectors (agent.diagnosis) read every
reading, command and state as the agent would and are checked once a simulated minute. An
alarm is a series or actuator turning faulty; it is right when it names the injected fault on
the injected series or actuator after the onset. Figures: precision and recall per kind, the
median and 95th percentile time to detect, false alarms per device-day on healthy traces.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from agent.config import parse_config
from agent.diagnosis.actuators import Timing
from agent.diagnosis.engine import DiagnoseEngine
from agent.diagnosis.fleet import Diagnoser, Layout
from agent.diagnosis.intake import Measured, measured
from agent.diagnosis.verdict import FAULTY
from firmware_sim.traces import KINDS, SIZES, Label, trace

CHECK_EVERY = 60.0
DEVICES = 6  # room-1, room-2, room-3, the HVAC, the lamp, the valve
SENSORS = parse_config(
    "sensors:\n"
    "  temperature: {unit: C, range: [-40, 85]}\n"
    "  humidity: {unit: '%', range: [0, 100]}\n"
    "  co2: {unit: ppm, range: [250, 10000]}\n"
).sensors.kinds
LAYOUT = Layout(
    rooms={"room": ["room-1", "room-2", "room-3"]},
    hvac_rooms={"room-hvac/hvac": "room-1/temperature"},
    timing=Timing(effect_after=1200, fight_window=600, fight_memory=7200),
    bounds={q: s.range for q, s in SENSORS.items() if s.range is not None},
)


@dataclass(slots=True)
class Alarm:
    t: float
    kind: str  # "sensor" or "actuator"
    key: str
    fault: str


@dataclass(slots=True)
class Tally:
    """One detector's results for one fault kind."""

    traces: int = 0
    found: int = 0
    right: int = 0  # alarms of this kind that were right
    alarms: int = 0  # alarms of this kind, on any trace
    delays: list[float] = field(default_factory=list)
    unobservable: int = 0  # traces where the fault never had a chance to show

    @property
    def precision(self) -> float:
        return self.right / self.alarms if self.alarms else float("nan")

    @property
    def recall(self) -> float:
        return self.found / self.traces if self.traces else float("nan")

    def cells(self) -> str:
        med = statistics.median(self.delays) / 60 if self.delays else float("nan")
        p95 = _p95(self.delays) / 60 if self.delays else float("nan")
        return f"{self.precision:>9.3f} {self.recall:>7.3f} {med:>8.1f} {p95:>8.1f}"

    def row(self, kind: str) -> str:
        note = f"  ({self.unobservable} more never exercised)" if self.unobservable else ""
        return f"{kind:<13} {self.traces:>6} {self.cells()}{note}"


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def run_trace(kind: str | None, seed: int, size: float, hours: float = 24.0,
              engines: Mapping[str, DiagnoseEngine] | None = None,
              ) -> tuple[Label | None, list[Alarm], bool]:
    """Feed one trace to a fresh :class:`Diagnoser` (with the diagnose ``engines`` given, per
    quantity); every alarm it raised, and whether the fault could show at all (a dead HVAC
    that is never asked to heat or cool cannot)."""
    label, events = trace(kind, seed, size, hours=hours)
    diag: Diagnoser | None = None
    alarms: list[Alarm] = []
    next_check = 0.0
    exercised = kind != "no_effect"
    for event in events:
        if (not exercised and label is not None and event.what == "command"
                and event.data[0] == "room-hvac" and event.data[3] in ("heat", "cool")
                and event.t >= label.onset):
            exercised = True
        if diag is None:
            diag, next_check = Diagnoser(LAYOUT, event.t), event.t + CHECK_EVERY
            diag.engines = {q: e.fresh() for q, e in (engines or {}).items()}
        while event.t >= next_check:
            alarms += [Alarm(next_check, c.kind, c.key, c.health.fault or "")
                       for c in diag.check(next_check) if c.health.state == FAULTY]
            next_check += CHECK_EVERY
        _feed(diag, event.what, event.t, event.data)
    return label, alarms, exercised


def _feed(diag: Diagnoser, what: str, t: float, data: tuple[object, ...]) -> None:
    if what == "reading":
        topic, payload = data
        assert isinstance(topic, str) and isinstance(payload, bytes)
        got = measured(topic, payload, t, prefix="edge", max_bytes=4096, sensors=SENSORS)
        if isinstance(got, Measured):
            diag.reading(got.device, got.quantity, got.ts, got.value, got.in_range)
        elif got is not None:
            diag.seen(got[0], got[1], t)
    elif what == "command":
        device, actuator, cid, action, value, ttl = data
        diag.command(str(device), str(actuator), t, str(cid), str(action),
                     value if isinstance(value, float) else None, float(str(ttl)))
    else:
        device, actuator, action, value, cid = data
        diag.state(str(device), str(actuator), t, str(action),
                   value if isinstance(value, float) else None, cid)


@dataclass(slots=True)
class Results:
    tallies: dict[str, Tally] = field(default_factory=lambda: {k: Tally() for k in KINDS})
    healthy_alarms: Counter[str] = field(default_factory=Counter)
    healthy_days: float = 0.0

    def add(self, label: Label | None, alarms: list[Alarm], hours: float,
            exercised: bool = True) -> None:
        if label is None:
            self.healthy_days += hours / 24
            for a in alarms:
                self.healthy_alarms[a.fault] += 1
                self.tallies[a.fault].alarms += 1
            return
        tally = self.tallies[label.kind]
        hits = [a for a in alarms if a.key == label.key and a.fault == label.kind
                and label.onset <= a.t <= label.end + 3600]
        if exercised:
            tally.traces += 1
        else:
            tally.unobservable += 1
        if hits and exercised:
            tally.found += 1
            tally.delays.append(hits[0].t - label.onset)
        for a in alarms:
            self.tallies[a.fault].alarms += 1 if a.fault in self.tallies else 0
            self.tallies[a.fault].right += a in hits

    def false_alarms(self) -> str:
        per_device_day = sum(self.healthy_alarms.values()) / max(1e-9, self.healthy_days * DEVICES)
        return f"{sum(self.healthy_alarms.values())} = {per_device_day:.3f}/device-day"

    def table(self) -> list[str]:
        lines = [f"{'fault':<13} {'traces':>6} {'precision':>9} {'recall':>7} "
                 f"{'ttd_p50':>8} {'ttd_p95':>8}   (minutes, simulated)"]
        lines += [self.tallies[k].row(k) for k in KINDS]
        per_device_day = sum(self.healthy_alarms.values()) / max(1e-9, self.healthy_days * DEVICES)
        lines.append(f"healthy: {self.healthy_days:.0f} days x {DEVICES} devices, "
                     f"{sum(self.healthy_alarms.values())} false alarms = "
                     f"{per_device_day:.3f} per device-day ({7 * per_device_day:.2f} per "
                     f"device-week) {dict(self.healthy_alarms)}")
        return lines


def held_out_plan(seeds: int, healthy: int, first_seed: int = 900_000
                  ) -> list[tuple[str | None, int, float]]:
    """The benchmark's traces: held-out seeds (from ``first_seed``, far from any training or
    gate seed) and the held-out sizes of each kind."""
    plan: list[tuple[str | None, int, float]] = [(None, first_seed + i, 0.0)
                                                 for i in range(healthy)]
    for kind in KINDS:
        sizes = SIZES[kind][1]
        plan += [(kind, first_seed + 1000 + i, sizes[i % len(sizes)]) for i in range(seeds)]
    return plan


def run_engines(plan: list[tuple[str | None, int, float]], hours: float,
                engines: Mapping[str, Mapping[str, DiagnoseEngine]]) -> dict[str, Results]:
    """Every trace of ``plan`` through each set of engines ("statistical": none)."""
    out = {name: Results() for name in engines}
    for kind, seed, size in plan:
        for name, chosen in engines.items():
            label, alarms, exercised = run_trace(kind, seed, size, hours, chosen)
            out[name].add(label, alarms, hours, exercised)
    return out


def side_by_side(results: dict[str, Results]) -> list[str]:
    names = list(results)
    head = " | ".join(f"{n + ': precision':>18} {'recall':>7} {'p50':>8} {'p95':>8}"
                      for n in names)
    lines = [f"{'fault':<13} {'traces':>6} {head}   (time to detect: simulated minutes)"]
    for kind in KINDS:
        cells = " | ".join(f"{results[n].tallies[kind].cells():>43}" for n in names)
        lines.append(f"{kind:<13} {results[names[0]].tallies[kind].traces:>6} {cells}")
    first = results[names[0]]
    lines.append(f"healthy: {first.healthy_days:.0f} days x {DEVICES} devices, false alarms: "
                 + ", ".join(f"{n} {results[n].false_alarms()}" for n in names))
    return lines


def no_worse(base: Results, other: Results) -> list[str]:
    """The kinds where ``other`` is worse than ``base`` (precision, recall or false alarms)."""
    out = [k for k in KINDS
           if (other.tallies[k].recall < base.tallies[k].recall - 1e-9)
           or (other.tallies[k].precision < base.tallies[k].precision - 1e-9)]
    if sum(other.healthy_alarms.values()) > sum(base.healthy_alarms.values()):
        out.append("healthy")
    return out


def run_bench(seeds: int = 10, healthy: int = 20, hours: float = 24.0,
              echo: Callable[[str], None] = print, first_seed: int = 900_000,
              engine: bool = True) -> bool:
    """The statistical detectors and (``engine``) the diagnose engines side by side, on
    held-out seeds and sizes; the gate's pick per quantity from its own held-out windows."""
    started = time.process_time()
    plan = held_out_plan(seeds, healthy, first_seed)
    engines: dict[str, Mapping[str, DiagnoseEngine]] = {"statistical": {}}
    if engine:
        from agent.bench.diagengine import prepare

        model, picked = prepare(echo)
        engines["model"], engines["picked"] = model, picked
    results = run_engines(plan, hours, engines)
    if engine:
        for line in side_by_side(results):
            echo(line)
        worse = no_worse(results["statistical"], results["picked"])
        echo("picked engine no worse than statistical on every kind: "
             + ("yes" if not worse else f"NO ({', '.join(worse)})"))
    else:
        echo("statistical detectors (agent.diagnosis)")
        for line in results["statistical"].table():
            echo(line)
    echo(f"cpu: {time.process_time() - started:.0f} s")
    stat = results["statistical"].tallies.values()
    return all(t.found >= 0.95 * t.traces for t in stat)
