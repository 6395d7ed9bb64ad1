"""Windowed features per (device, quantity), and the one small interface others read them by."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class Features:
    """What a window of cleaned values says; values in the quantity's canonical unit."""

    device: str
    quantity: str
    unit: str | None
    window_s: float
    count: int
    mean: float
    min: float
    max: float
    std: float
    slope_per_min: float | None  # least-squares slope; None with fewer than two times
    last: float
    last_ts: float
    age_s: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def compute(
    points: Iterable[tuple[float, float]],
    *,
    device: str,
    quantity: str,
    unit: str | None,
    window_s: float,
    now: float,
) -> Features | None:
    """Features of the ``(ts, value)`` points inside ``[now - window_s, now]``; None if none."""
    inside = [(t, v) for t, v in points if now - window_s <= t <= now]
    if not inside:
        return None
    n = len(inside)
    values = [v for _, v in inside]
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / n)
    t_mean = math.fsum(t for t, _ in inside) / n
    t_var = math.fsum((t - t_mean) ** 2 for t, _ in inside)
    slope = None
    if n > 1 and t_var > 0:
        slope = 60.0 * math.fsum((t - t_mean) * (v - mean) for t, v in inside) / t_var
    last_ts, last = max(inside, key=lambda p: p[0])
    return Features(
        device,
        quantity,
        unit,
        window_s,
        n,
        mean,
        min(values),
        max(values),
        std,
        slope,
        last,
        last_ts,
        now - last_ts,
    )


class Normalizer:
    """Min-max against fixed bounds, or z-score against running statistics."""

    def __init__(self, method: str, bounds: tuple[float, float] | None) -> None:
        self.method = method
        self.bounds = bounds

    def normalize(self, features: Features, mean: float, std: float) -> dict[str, float | None]:
        if self.method == "minmax":
            if self.bounds is None:
                return {}
            offset, scale = self.bounds[0], self.bounds[1] - self.bounds[0]
        else:
            if std <= 0:
                return {}
            offset, scale = mean, std
        slope = features.slope_per_min
        return {
            "mean": (features.mean - offset) / scale,
            "min": (features.min - offset) / scale,
            "max": (features.max - offset) / scale,
            "last": (features.last - offset) / scale,
            "std": features.std / scale,
            "slope_per_min": None if slope is None else slope / scale,
        }
