"""Cleaning filters: pure functions, with the small state objects that feed them a window."""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass

MAD_TO_SIGMA = 1.4826  # scales the median absolute deviation to a normal sigma


@dataclass(frozen=True, slots=True)
class HampelVerdict:
    outlier: bool
    value: float  # the input, or the window's median when the input is an outlier


def _median(ordered: list[float]) -> float:
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def hampel(
    window: list[float] | deque[float], x: float, sigmas: float, min_deviation: float = 0.0
) -> HampelVerdict:
    """Flag ``x`` if it lies more than ``sigmas`` robust sigmas from the median of ``window``.

    The window holds the preceding raw values (a causal Hampel filter). Fewer than three
    values decide nothing. Deviations up to ``min_deviation`` are never outliers, so that a
    quantised sensor with a zero MAD does not flag its every step.
    """
    if len(window) < 3:
        return HampelVerdict(False, x)
    med = _median(sorted(window))
    mad = _median(sorted([abs(v - med) for v in window]))
    limit = max(sigmas * MAD_TO_SIGMA * mad, min_deviation)
    if abs(x - med) > limit:
        return HampelVerdict(True, med)
    return HampelVerdict(False, x)


def ewma(previous: float | None, x: float, alpha: float) -> float:
    """Exponentially weighted moving average; ``alpha`` is the weight of the new value."""
    return x if previous is None else alpha * x + (1.0 - alpha) * previous


def outside_deadband(last_stored: float | None, x: float, deadband: float | None) -> bool:
    """True when ``x`` should be written: no deadband, nothing stored yet, or a real change."""
    return deadband is None or last_stored is None or abs(x - last_stored) >= deadband


class Hampel:
    """A causal Hampel filter over the last ``window`` raw values."""

    def __init__(self, window: int, sigmas: float, min_deviation: float = 0.0) -> None:
        self._values: deque[float] = deque(maxlen=window)
        self.sigmas = sigmas
        self.min_deviation = min_deviation

    def __call__(self, x: float) -> HampelVerdict:
        verdict = hampel(self._values, x, self.sigmas, self.min_deviation)
        self._values.append(x)
        return verdict

    def seed(self, x: float) -> None:
        self._values.append(x)


class Ewma:
    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.value: float | None = None

    def __call__(self, x: float) -> float:
        self.value = ewma(self.value, x, self.alpha)
        return self.value


class MovingMedian:
    def __init__(self, window: int) -> None:
        self._values: deque[float] = deque(maxlen=window)

    def __call__(self, x: float) -> float:
        self._values.append(x)
        return float(statistics.median(self._values))


class RunningStats:
    """Welford's running mean and variance, for z-score normalisation."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self._m2 = 0.0

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self._m2 += delta * (x - self.mean)

    @property
    def std(self) -> float:
        return (self._m2 / self.n) ** 0.5 if self.n > 1 else 0.0
