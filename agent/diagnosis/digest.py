"""One series' window features -> one short, deterministic sentence: what a diagnose engine sees.

Like the decisions' digest (:mod:`agent.policy.digest`), the comparisons are spelled out in
fixed words and every number is put into a few levels, so the same situation always gives the
same text and a Pi embeds each text once: a long healthy day is a handful of distinct digests.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from agent.diagnosis import detectors as d
from agent.diagnosis.series import WINDOW, SeriesMonitor


@dataclass(frozen=True, slots=True)
class Features:
    """The numbers a digest is made of (each already what the detectors look at)."""

    quantity: str
    silent_gaps: float | None  # time since the last reading, in usual intervals
    run: int  # identical readings at the end
    run_chance: float  # how likely such a run is for this series
    jittery: bool  # the series moves like a real sensor
    spikes: int
    noise_ratio: float | None  # step spread against its own history
    out_of_range: int  # among the last RANGE_WINDOW readings
    drift_ratio: float | None  # offset against the room, in tolerances
    unit_jump: bool


def _level(value: float, edges: tuple[float, ...], words: tuple[str, ...]) -> str:
    for edge, word in zip(edges, words, strict=False):
        if value < edge:
            return word
    return words[-1]


def features(monitor: SeriesMonitor, now: float) -> Features:
    """Call after ``monitor.findings(now)``, whose unit check it reads."""
    values = list(monitor.values)
    window = values[-WINDOW:]
    interval = d.usual_interval(monitor.times)
    gaps = None
    if interval and monitor.last_seen is not None:
        gaps = max(0.0, now - monitor.last_seen) / interval
    run = d.run_length(values) if values else 0
    same, pairs = monitor.same - max(0, run - 1), monitor.pairs - max(0, run - 1)
    chance = d.repeat_probability(same, pairs) ** max(0, run - 1) if pairs >= 30 else 1.0
    base = monitor.base_scale()
    floor = monitor.limits.spike_floor
    spikes = 0
    if floor is not None and len(window) >= 10 and len(set(window)) > 3:
        scale = max(base or 0.0, d.robust_scale(d.steps(window)))
        spikes = d.spike_count(window, scale, floor)
    noise = None
    if base and len(window) >= 20:
        scale = d.robust_scale(d.steps(window))
        # steps smaller than a fifth of the smallest spike are no noise worth the name
        noise = scale / base if floor is None or scale > floor / 5 else min(1.0, scale / base)
    drift = None
    tol = monitor.limits.drift_tolerance
    if tol and len(monitor.baseline) >= 60 and len(monitor.residuals) >= 10:
        offset = statistics.median(list(monitor.residuals)[-30:]) - statistics.median(
            monitor.baseline)
        drift = offset / tol
    return Features(monitor.quantity, gaps, run, chance, monitor.jittery, spikes, noise,
                    sum(not ok for ok in monitor.in_range), drift,
                    monitor.unit_jumped)


def digest(f: Features) -> str:
    """E.g. "Temperature sensor. Last reading: just now. Repeats: changing. Spikes: none. ..." """
    silence = "unknown" if f.silent_gaps is None else _level(
        f.silent_gaps, (2, 4, 8), ("just now", "a little late", "late", "very late"))
    if f.run < 3:
        repeats = "changing"
    elif f.run < d.STUCK_MIN_RUN or f.run_chance > d.STUCK_SUSPECT_P:
        repeats = "a few identical readings, usual for it"
    else:
        rare = "very rare" if f.run_chance <= d.STUCK_FAULTY_P else "rare"
        repeats = f"many identical readings, {rare} for it"
    moves = "moves like a real sensor" if f.jittery else "moves smoothly"
    spikes = _level(f.spikes, (1, 2, 3), ("none", "one", "two", "three or more"))
    noise = "unknown" if f.noise_ratio is None else _level(
        f.noise_ratio, (1.5, 2, 4), ("usual", "a bit higher", "higher", "much higher"))
    rng = _level(f.out_of_range, (1, 3), ("none", "a few", "many"))
    if f.drift_ratio is None:
        room = "no reference"
    else:
        way = "above" if f.drift_ratio > 0 else "below"
        room = _level(abs(f.drift_ratio), (0.5, 1.0, 2.0),
                      ("as usual", f"a little {way}", f"far {way}", f"very far {way}"))
    unit = "jumped by a unit conversion" if f.unit_jump else "steady"
    return (f"{f.quantity.capitalize()} sensor, it {moves}. Last reading: {silence}. "
            f"Repeats: {repeats}. Spikes: {spikes}. Noise: {noise}. Out of range: {rng}. "
            f"Against the room: {room}. Level: {unit}.")
