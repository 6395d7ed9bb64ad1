"""The stateful part of the pipeline: per-series filters, duplicate detection and features.

:class:`Pipeline` is fed :class:`Reading` objects by the ingest thread and answers feature
queries from any thread through :meth:`Pipeline.features` (the one interface other parts use).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from agent.config import Config, SensorConfig
from agent.errors import RejectedReading
from agent.pipeline.features import Features, Normalizer, compute
from agent.pipeline.filters import Ewma, Hampel, MovingMedian, RunningStats, outside_deadband
from agent.pipeline.parse import Reading
from agent.units import convert

DEDUP_MEMORY = 4096  # recent (seq, ts) keys remembered per series
MAX_POINTS = 20_000  # points held per series for features: a day-long window at 4 s a point
SeriesKey = tuple[str, str]
DedupKey = tuple[int, float | None]


class Processed(NamedTuple):
    """A reading after conversion and cleaning, ready to be stored."""

    reading: Reading
    unit: str | None
    value: float  # in the canonical unit
    clean: float
    outlier: bool
    store: bool  # False when the deadband suppresses the row


@dataclass
class SeriesState:
    sensor: SensorConfig
    horizon_s: float
    hampel: Hampel | None
    smooth: Callable[[float], float] | None
    stats: RunningStats = field(default_factory=RunningStats)
    # (ts, value, held_from): held_from is the earlier of ts and the agent's clock on arrival
    points: deque[tuple[float, float, float]] = field(default_factory=deque)
    last_stored: float | None = None
    seen: set[DedupKey] = field(default_factory=set)
    seen_order: deque[DedupKey] = field(default_factory=deque)

    def remember(self, key: DedupKey) -> bool:
        """Record a (seq, ts) key; False if it was already seen."""
        if key in self.seen:
            return False
        self.seen.add(key)
        self.seen_order.append(key)
        if len(self.seen_order) > DEDUP_MEMORY:
            self.seen.discard(self.seen_order.popleft())
        return True

    def add_point(self, ts: float, value: float, now: float) -> None:
        """Hold a point for the feature windows; ``now`` is the agent's clock.

        Pruned by the agent's clock, not by the newest reading: a reading dated a day ahead
        (SPEC 1 allows it) would otherwise keep every later point for a day. A point is held
        from the earlier of its ts and its arrival, so each leaves at most ``horizon_s`` after
        it arrived whatever its ts says."""
        self.points.append((ts, value, min(ts, now)))
        self.stats.add(value)
        cutoff = now - self.horizon_s
        while self.points and (self.points[0][2] < cutoff or len(self.points) > MAX_POINTS):
            self.points.popleft()


def _state_for(sensor: SensorConfig, horizon_s: float) -> SeriesState:
    hampel = None
    if sensor.outlier is not None:
        o = sensor.outlier
        hampel = Hampel(o.window, o.sigmas, o.min_deviation)
    smooth: Callable[[float], float] | None = None
    if sensor.smooth is not None:
        if sensor.smooth.ewma is not None:
            smooth = Ewma(sensor.smooth.ewma)
        elif sensor.smooth.median is not None:
            smooth = MovingMedian(sensor.smooth.median)
    return SeriesState(sensor, horizon_s, hampel, smooth)


class Pipeline:
    """Convert, check, filter and condense readings, one series at a time."""

    def __init__(self, config: Config) -> None:
        self._sensors = config.sensors
        self._default = SensorConfig()
        self.windows = sorted(config.features.windows)
        self._horizon = self.windows[-1]
        self._series: dict[SeriesKey, SeriesState] = {}
        self._per_device: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _state(self, key: SeriesKey, *, limited: bool = False) -> SeriesState:
        """The state of a series, made if new; ``limited``: refuse a new series beyond the caps
        of ``sensors:`` (names from the wire must not grow memory, rows and entities)."""
        state = self._series.get(key)
        if state is None:
            if limited:
                self._check_room(key)
            sensor = self._sensors.get(key[1], self._default)
            state = self._series[key] = _state_for(sensor, self._horizon)
            self._per_device[key[0]] += 1
        return state

    def _check_room(self, key: SeriesKey) -> None:
        limits = self._sensors
        if self._per_device[key[0]] >= limits.max_series_per_device:
            raise RejectedReading(
                f"device {key[0]} already has {self._per_device[key[0]]} series "
                f"(sensors.max_series_per_device)",
                "series-limit",
            )
        if len(self._series) >= limits.max_series:
            raise RejectedReading(
                f"the agent already holds {len(self._series)} series (sensors.max_series)",
                "series-limit",
            )

    def convert(self, reading: Reading) -> tuple[float, str | None]:
        """The reading's value in its quantity's canonical unit, checked against its range."""
        if self._sensors.strict and reading.quantity not in self._sensors:
            raise RejectedReading(
                f"quantity {reading.quantity!r} is not configured under sensors: "
                f"(sensors.strict is on)",
                "unknown-quantity",
            )
        sensor = self._sensors.get(reading.quantity, self._default)
        unit = sensor.unit or reading.unit
        value = reading.value
        if reading.unit is not None and unit is not None:
            value = convert(value, reading.unit, unit)
        if sensor.range is not None and not sensor.range[0] <= value <= sensor.range[1]:
            lo, hi = sensor.range
            raise RejectedReading(
                f"value {value:g} {unit or ''} is outside the plausible range "
                f"[{lo:g}, {hi:g}]".replace("  ", " "),
                "out-of-range",
            )
        return value, unit

    def process(self, reading: Reading) -> Processed | None:
        """Clean one reading; None for a redelivered duplicate; raise RejectedReading if bad."""
        value, unit = self.convert(reading)
        with self._lock:
            state = self._state((reading.device, reading.quantity), limited=True)
            if reading.seq is not None and not state.remember((reading.seq, reading.sent_ts)):
                return None
            verdict = state.hampel(value) if state.hampel is not None else None
            clean = verdict.value if verdict is not None else value
            if state.smooth is not None:
                clean = state.smooth(clean)
            state.add_point(reading.ts, clean, reading.recv_ts)
            outlier = verdict is not None and verdict.outlier
            # An outlier is always written, so that the cleaning can be audited.
            store = outlier or outside_deadband(state.last_stored, clean, state.sensor.deadband)
            if store:
                state.last_stored = clean
        return Processed(reading, unit, value, clean, outlier, store)

    def seen(self, device: str, quantity: str, keys: list[DedupKey]) -> None:
        """Pre-load duplicate detection with keys already stored (after a restart)."""
        with self._lock:
            state = self._state((device, quantity))
            for key in keys:
                state.remember(key)

    def restore(
        self,
        device: str,
        quantity: str,
        points: list[tuple[float, float, float]],
        now: float | None = None,
    ) -> None:
        """Refill a series from stored ``(ts, value, clean)`` rows (after a restart): the
        feature window, the outlier window and the smoother continue where they were. ``now``
        defaults to the newest row's time, or the wall clock if that is later (a row dated
        ahead)."""
        newest = max((ts for ts, _, _ in points), default=-math.inf)
        when = min(newest, time.time()) if now is None else now
        with self._lock:
            state = self._state((device, quantity))
            for ts, value, clean in points:
                state.add_point(ts, clean, when)
                if state.hampel is not None:
                    state.hampel.seed(value)
                if isinstance(state.smooth, MovingMedian):
                    state.smooth(value)
            if points:
                state.last_stored = points[-1][2]
                if isinstance(state.smooth, Ewma):
                    state.smooth.value = points[-1][2]

    def reconfigure(self, config: Config) -> None:
        """New per-quantity settings (SIGHUP): series whose settings changed get new filters;
        their history, duplicate memory and feature window are kept."""
        with self._lock:
            self._sensors = config.sensors
            for key, old in list(self._series.items()):
                sensor = self._sensors.get(key[1], self._default)
                if sensor == old.sensor:
                    continue
                new = _state_for(sensor, self._horizon)
                new.points, new.stats = old.points, old.stats
                new.seen, new.seen_order, new.last_stored = (
                    old.seen,
                    old.seen_order,
                    old.last_stored,
                )
                self._series[key] = new

    # -- the read interface ------------------------------------------------------------------

    def series(self) -> list[SeriesKey]:
        with self._lock:
            return sorted(self._series)

    def features(
        self, device: str, quantity: str, window_s: float | None = None, now: float | None = None
    ) -> Features | None:
        """Features of one series over ``window_s`` (default the shortest window)."""
        when = time.time() if now is None else now
        with self._lock:
            state = self._series.get((device, quantity))
            if state is None:
                return None
            points = [(t, v) for t, v, _ in state.points]
            unit = state.sensor.unit
        return compute(
            points,
            device=device,
            quantity=quantity,
            unit=unit,
            window_s=self.windows[0] if window_s is None else window_s,
            now=when,
        )

    def normalized(self, features: Features) -> dict[str, float | None]:
        """Model-ready features: min-max against the configured bounds, or z-score."""
        with self._lock:
            state = self._series.get((features.device, features.quantity))
            if state is None:
                return {}
            sensor, mean, std = state.sensor, state.stats.mean, state.stats.std
        bounds = sensor.normalize.range or sensor.range
        return Normalizer(sensor.normalize.method, bounds).normalize(features, mean, std)
