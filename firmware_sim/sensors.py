"""Simulated sensors: a smooth signal with the faults real devices show.

Each :class:`SensorSim` is seeded, so a run repeats. Faults: Gaussian noise, spikes, readings
sent in another unit, bare-number payloads, duplicate redeliveries and malformed messages.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field

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
    seed: int = 0
    prefix: str = "edge"
    seq: int = 0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.seed}:{self.device}:{self.quantity}")

    @property
    def topic(self) -> str:
        return f"{self.prefix}/sensors/{self.device}/{self.quantity}"

    def true_value(self, t: float) -> float:
        return self.base + self.amplitude * math.sin(2 * math.pi * t / self.period_s)

    def messages(self, t: float) -> list[bytes]:
        """The payloads this sensor sends at time ``t`` (usually one)."""
        rng = self.rng
        if rng.random() < self.malformed_prob:
            return [rng.choice(MALFORMED)]
        value = (
            self.true_value(t) + rng.gauss(0.0, self.noise) if self.noise else self.true_value(t)
        )
        if rng.random() < self.spike_prob:
            value += self.spike_size * rng.choice((-1, 1))
        if rng.random() < self.bare_prob:
            return [f"{value:.2f}".encode()]
        self.seq += 1
        body: dict[str, object] = {"value": round(value, 3), "ts": round(t, 3), "seq": self.seq}
        if self.fahrenheit:
            body["value"], body["unit"] = round(value * 9 / 5 + 32, 3), "F"
        elif self.unit:
            body["unit"] = self.unit
        payload = json.dumps(body).encode()
        return [payload, payload] if rng.random() < self.duplicate_prob else [payload]
