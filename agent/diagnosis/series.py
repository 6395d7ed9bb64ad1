"""One sensor series' window and history, and the findings of every detector over it."""

from __future__ import annotations

import bisect
import statistics
from collections import deque
from dataclasses import dataclass

from agent.diagnosis import detectors as d
from agent.diagnosis.verdict import Finding

#: per quantity: the smallest spike worth the name, and how far a reading may walk away from a
#: reference of the same room; quantities not listed (motion, light, power) step by nature
SPIKE_FLOOR = {"temperature": 1.5, "humidity": 8.0, "co2": 300.0}
DRIFT_TOLERANCE = {"temperature": 1.5, "humidity": 8.0, "co2": 250.0}
WINDOW = 60  # readings the spike, noise and wrong-unit detectors look at
BASELINE_READINGS = 60  # residuals against the reference that fix the usual difference


@dataclass(frozen=True, slots=True)
class Limits:
    spike_floor: float | None
    drift_tolerance: float | None

    @classmethod
    def of(cls, quantity: str) -> Limits:
        return cls(SPIKE_FLOOR.get(quantity), DRIFT_TOLERANCE.get(quantity))


class SeriesMonitor:
    """Feed :meth:`observe` every reading of one series (in range or not, in order), then ask
    :meth:`findings`. Holds a few hundred numbers; no clock of its own."""

    def __init__(self, device: str, quantity: str, history: int = 600) -> None:
        self.device, self.quantity = device, quantity
        self.name = f"{device} {quantity}"
        self.limits = Limits.of(quantity)
        self.times: deque[float] = deque(maxlen=history)
        self.values: deque[float] = deque(maxlen=history)  # in range only
        self.raw: deque[float] = deque(maxlen=WINDOW)  # every numeric reading
        self.in_range: deque[bool] = deque(maxlen=d.RANGE_WINDOW)
        self.last_seen: float | None = None
        self.last_bad: float | None = None
        self.same = self.pairs = 0
        self.turns = self.moves = 0  # steps that reverse the previous one, of nonzero steps
        self._last_step = 0.0
        self.resting: set[float] = set()
        self.change_times: deque[float] = deque(maxlen=4000)
        self.scales: deque[float] = deque(maxlen=48)  # step spread of past windows
        self._taken = 0  # in-range readings ever observed (values holds the last ``history``)
        self.residuals: deque[float] = deque(maxlen=WINDOW)
        self.baseline: list[float] = []
        self._unit: Finding | None = None

    # -- feeding ------------------------------------------------------------------------------

    def observe(self, ts: float, value: float, in_range: bool = True) -> None:
        self.last_seen = ts if self.last_seen is None else max(self.last_seen, ts)
        self.raw.append(value)
        self.in_range.append(in_range)
        if not in_range:
            self.last_bad = value
            return
        if self.values:
            previous = self.values[-1]
            self.pairs += 1
            if value == previous:
                self.same += 1
            else:
                step = value - previous
                self.moves += 1
                self.turns += step * self._last_step < 0
                self._last_step = step
                self.change_times.append(ts)
                self._run_ended(previous)
        self.times.append(ts)
        self.values.append(value)
        self._taken += 1
        # every 30 readings: counted, not len(values), which stays at ``history`` once full
        if self._taken % 30 == 0 and len(self.values) >= WINDOW:
            self.scales.append(d.robust_scale(d.steps(list(self.values)[-WINDOW:])))

    def _run_ended(self, level: float) -> None:
        """A run of one value ended: unless it looked stuck, the series rests at that level
        by nature (a floor, standby power, a lamp), so a later run there is no fault."""
        n = d.run_length(self.values)
        if n < 3 or len(self.resting) >= 64:
            return
        same, pairs = self.same - n, self.pairs - n  # this reading's pair is already counted
        chance = d.repeat_probability(same, pairs) ** (n - 1)
        if n < d.STUCK_MIN_RUN or pairs < 30 or chance > d.STUCK_FAULTY_P:
            self.resting.add(level)

    def observe_reference(self, residual: float) -> None:
        """This series minus a reference of the same room, at this reading."""
        if len(self.baseline) < BASELINE_READINGS:
            self.baseline.append(residual)
        else:
            self.residuals.append(residual)

    def seen(self, ts: float) -> None:
        """A message arrived that carried no usable number: the device is not silent."""
        self.last_seen = ts if self.last_seen is None else max(self.last_seen, ts)

    # -- judging ------------------------------------------------------------------------------

    def changes_since(self, ts: float) -> int:
        return len(self.change_times) - bisect.bisect_left(self.change_times, ts)

    @property
    def run_start(self) -> float | None:
        n = d.run_length(self.values) if self.values else 0
        return self.times[-n] if n else None

    def base_scale(self) -> float | None:
        return statistics.median(self.scales) if len(self.scales) >= 2 else None

    def findings(self, now: float, others_moved: int | None = None,
                 reference: str = "") -> list[Finding]:
        out: list[Finding | None] = [
            d.silent(self.name, now, self.last_seen, d.usual_interval(self.times)),
            d.out_of_range(self.name, [not ok for ok in self.in_range], self.last_bad),
            self._unit_finding(),
        ]
        if self.values:
            out.append(self._stuck(others_moved))
        floor = self.limits.spike_floor
        window = list(self.values)[-WINDOW:]
        if floor is not None:
            out.append(d.spiky(self.name, window, self.base_scale(), floor, self.quantity))
            if (d.robust_scale(d.steps(window)) if len(window) > 2 else 0.0) > floor / 5:
                out.append(d.noisy(self.name, window, self.base_scale()))
        if self.limits.drift_tolerance is not None and len(self.baseline) >= BASELINE_READINGS:
            out.append(d.drift(self.name, list(self.residuals)[-30:],
                               statistics.median(self.baseline), self.limits.drift_tolerance,
                               reference or "the room's other sensor"))
        found = [f for f in out if f is not None]
        if any(f.fault == "wrong_unit" for f in found):
            found = [f for f in found if f.fault not in ("out_of_range", "spiky", "noisy")]
        return found

    def _stuck(self, others_moved: int | None) -> Finding | None:
        n = d.run_length(self.values)
        same, pairs = self.same - (n - 1), self.pairs - (n - 1)
        found = d.stuck(self.name, list(self.values)[-n:], list(self.times)[-n:],
                        d.repeat_probability(same, pairs), pairs, self.resting, others_moved)
        if found is not None and not self.jittery:
            # a smooth series (a lamp, a noiseless level at rest) may really stand still
            found = Finding(found.fault, min(found.score, 0.6), found.evidence,
                              found.explanation, found.started)
        return found

    @property
    def jittery(self) -> bool:
        """Whether this series moves like a real sensor: measurement noise makes its steps
        turn back often. Only such a series that stops moving is stuck for sure."""
        return (self.limits.spike_floor is not None and self.moves >= 30
                and self.turns >= 0.3 * self.moves)

    @property
    def unit_jumped(self) -> bool:
        """Whether the last :meth:`findings` saw a unit jump that still holds."""
        return self._unit is not None

    def _unit_finding(self) -> Finding | None:
        """A unit jump, kept while the level stays where the conversion put it."""
        raw = list(self.raw)
        if self._unit is not None:
            expected = self._unit.evidence["expected_in_unit"]
            old = self._unit.evidence["before"]
            recent = statistics.median(raw[-5:])
            if abs(recent - expected) < 0.5 * abs(expected - old):
                return self._unit
            self._unit = None
        if len(raw) >= 15:
            self._unit = d.wrong_unit(self.name, self.quantity, raw[-WINDOW:-5], raw[-5:])
        return self._unit
