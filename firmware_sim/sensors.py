"""Simulated sensors: a smooth signal with the faults real devices show.

Each :class:`SensorSim` is seeded, so a run repeats. Faults: Gaussian noise, spikes, dropouts,
offline periods, a stuck value, a drifting offset, readings sent in another unit, bare-number
payloads, duplicate redeliveries and malformed messages.

:meth:`SensorSim.messages` sends the sensor's own signal; :meth:`SensorSim.render` sends a value
that comes from elsewhere (the room physics), with ``t`` the simulated time that the fault
schedule follows and ``ts`` the wall-clock time written in the payload.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field

from firmware_sim.faults import LateFault, late_value

MALFORMED = [
    b"{",
    b"\xff\xfe\x00",
    b'{"value": "warm"}',
    b'{"value": NaN}',
    b"[]",
    b"",
    b'{"ts": 1}',
    b'{"value": 1e999}',
    b'{"value": true}',
]


@dataclass
class SensorSim:
    device: str
    quantity: str
    base: float
    amplitude: float = 0.0
    period_s: float = 600.0
    noise: float = 0.0
    spike_prob: float = 0.0
    spike_size: float = 15.0
    fahrenheit: bool = False  # temperatures sent in F with "unit": "F"
    unit: str | None = None
    bare_prob: float = 0.0  # bare-number payloads, no seq
    duplicate_prob: float = 0.0
    malformed_prob: float = 0.0
    dropout_prob: float = 0.0  # a reading lost on the way (its seq is skipped)
    offline: tuple[tuple[float, float], ...] = ()  # [start, end) of silent periods
    stuck: tuple[float, float] | None = None  # [start, end): repeats the first value inside
    drift_start: float | None = None  # from then on an offset grows by drift_per_hour
    drift_per_hour: float = 0.0
    late: tuple[LateFault, ...] = ()  # faults that set in during the run
    seed: int = 0
    prefix: str = "edge"
    seq: int = 0
    rng: random.Random = field(init=False)
    _stuck_value: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.seed}:{self.device}:{self.quantity}")

    @property
    def topic(self) -> str:
        return f"{self.prefix}/sensors/{self.device}/{self.quantity}"

    def true_value(self, t: float) -> float:
        return self.base + self.amplitude * math.sin(2 * math.pi * t / self.period_s)

    def messages(self, t: float) -> list[bytes]:
        """The payloads this sensor sends at time ``t`` (usually one)."""
        return self.render(self.true_value(t), t, t)

    def render(self, value: float, t: float, ts: float) -> list[bytes]:
        """The payloads for a true ``value`` at simulated time ``t``, stamped ``ts``."""
        if any(start <= t < end for start, end in self.offline):
            return []
        rng = self.rng
        if rng.random() < self.malformed_prob:
            return [rng.choice(MALFORMED)]
        value = self._measured(value, t)
        if self.dropout_prob and rng.random() < self.dropout_prob:
            self.seq += 1
            return []
        if rng.random() < self.bare_prob:
            return [f"{value:.2f}".encode()]
        self.seq += 1
        body: dict[str, object] = {"value": round(value, 3), "ts": round(ts, 3), "seq": self.seq}
        if self.fahrenheit:
            body["value"], body["unit"] = round(value * 9 / 5 + 32, 3), "F"
        elif self.unit:
            body["unit"] = self.unit
        payload = json.dumps(body).encode()
        return [payload, payload] if rng.random() < self.duplicate_prob else [payload]

    def _measured(self, value: float, t: float) -> float:
        """What the sensing element reports for ``value``: stuck, drifting, noisy, spiking."""
        if self.stuck is not None and self.stuck[0] <= t < self.stuck[1]:
            if self._stuck_value is None:
                self._stuck_value = value
            return self._stuck_value
        self._stuck_value = None
        if self.drift_start is not None and t > self.drift_start:
            value += self.drift_per_hour * (t - self.drift_start) / 3600
        rng = self.rng
        if self.noise:
            value += rng.gauss(0.0, self.noise)
        if rng.random() < self.spike_prob:
            value += self.spike_size * rng.choice((-1, 1))
        for fault in self.late:
            if t >= fault.at:
                draw, gauss, sign = rng.random(), rng.gauss(0.0, 1.0), rng.choice((-1, 1))
                value = late_value(fault, value, t, draw, gauss, sign, self.quantity)
        return value
