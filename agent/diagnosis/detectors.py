"""Pure sensor-fault detectors: a window of readings in, a finding (or None) out."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence

from agent.diagnosis.verdict import Finding

SILENT_SUSPECT, SILENT_FAULTY = 4.0, 8.0  # gaps, in usual intervals
SILENT_HISTORY = 20  # gaps seen before a series has a usual interval
SILENT_MIN_S = 5.0  # a shorter silence is never one (bursts of readings have tiny gaps)
STUCK_MIN_RUN = 8  # identical readings before a series can be stuck
STUCK_FAULTY_P, STUCK_SUSPECT_P = 1e-7, 1e-4  # chance of such a run for this series
STEPPED = 0.9  # a series repeating itself this often is quantised or steps: never stuck
SPIKE_SIGMAS = 8.0
SPIKES_FAULTY, SPIKES_SUSPECT = 3, 2  # spikes in the window
NOISE_FAULTY = 4.0  # robust spread of steps against its own history
RANGE_FAULTY, RANGE_SUSPECT = 3, 1  # out-of-range readings among the last RANGE_WINDOW
RANGE_WINDOW = 30
#: how a value in the canonical unit looks when the firmware sends another unit unannounced
CONVERSIONS: dict[str, tuple[tuple[str, float, float], ...]] = {
    "temperature": (("F", 1.8, 32.0), ("K", 1.0, 273.15)),
    "humidity": (("fraction", 0.01, 0.0),),
    "co2": (("percent", 1e-4, 0.0),),
}


def fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def usual_interval(times: Sequence[float]) -> float | None:
    """The median gap between readings (dropouts barely move it)."""
    gaps = [b - a for a, b in itertools.pairwise(times) if b > a]
    return statistics.median(gaps) if len(gaps) >= SILENT_HISTORY else None


def silent(name: str, now: float, last: float | None, interval: float | None) -> Finding | None:
    if last is None or interval is None or interval <= 0 or now - last < SILENT_MIN_S:
        return None
    gaps = (now - last) / interval
    if gaps < SILENT_SUSPECT:
        return None
    score = 0.5 + 0.5 * (gaps - SILENT_SUSPECT) / (SILENT_FAULTY - SILENT_SUSPECT)
    return Finding(
        "silent",
        score,
        {"silent_s": now - last, "usual_interval_s": interval, "missed": math.floor(gaps)},
        f"{name} has sent nothing for {fmt((now - last) / 60)} min; it usually reports every "
        f"{fmt(interval)} s.",
        last,
    )


def run_length(values: Sequence[float]) -> int:
    """How many readings at the end of ``values`` are identical."""
    n = 0
    for v in reversed(values):
        if v != values[-1]:
            break
        n += 1
    return n


def repeat_probability(same: int, pairs: int) -> float:
    """How often a series repeated its previous value: ``same`` of ``pairs`` (smoothed)."""
    return (same + 1) / (max(0, pairs) + 2)


def stuck(
    name: str,
    values: Sequence[float],
    times: Sequence[float],
    p: float,
    history: int,
    resting: set[float],
    others_moved: int | None,
) -> Finding | None:
    """The same value again and again where this series normally moves. ``p`` is how often
    the series repeated itself over ``history`` readings before this run; ``resting`` are levels
    it has rested at before (a floor, a lamp level); ``others_moved`` counts changes of the
    device's other series during the run."""
    n = run_length(values)
    if n < STUCK_MIN_RUN or history < 30 or values[-1] in resting or values[-1] == 0:
        return None
    chance = p ** (n - 1)
    if chance > STUCK_SUSPECT_P:
        return None
    score = 1.0 if chance <= STUCK_FAULTY_P else 0.6
    if p >= STEPPED:
        score = min(score, 0.6)  # a series that mostly repeats itself steps, it is not stuck
    if others_moved == 0:
        score = min(score, 0.6)  # the whole device is quiet: maybe the room is
    span = times[-1] - times[-n]
    others = "" if not others_moved else f" while its other readings changed {others_moved} times"
    return Finding(
        "stuck",
        score,
        {"same_readings": n, "stuck_s": span, "value": values[-1], "repeat_probability": p,
         "others_changed": float(others_moved or 0)},
        f"{name} looks stuck at {fmt(values[-1])}: the same reading {n} times in a row "
        f"({fmt(span / 60)} min){others}, where it repeats itself only {100 * p:.0f}% of the time.",
        times[-n],
    )


def robust_scale(values: Sequence[float]) -> float:
    """1.4826 x the median absolute deviation: the standard deviation of Gaussian data."""
    if not values:
        return 0.0
    med = statistics.median(values)
    return 1.4826 * statistics.median(abs(v - med) for v in values)


def steps(values: Sequence[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(values)]


def spikes_of(values: Sequence[float], scale: float, floor: float) -> list[tuple[float, float]]:
    """Readings that jump away from both neighbours and come back (a step is no spike), as
    (the reading, its neighbours' mean)."""
    limit = max(SPIKE_SIGMAS * scale, floor)
    out = []
    for a, b, c in zip(values, values[1:], values[2:], strict=False):
        up, down = b - a, b - c
        if up * down > 0 and min(abs(up), abs(down)) > limit and abs(c - a) < 0.5 * limit:
            out.append((b, (a + c) / 2))
    return out


def spike_count(values: Sequence[float], scale: float, floor: float) -> int:
    return len(spikes_of(values, scale, floor))


def converted(quantity: str, level: float, value: float) -> str | None:
    """The unit in which ``value`` is ``level``, if some unit conversion makes it so."""
    for unit, factor, offset in CONVERSIONS.get(quantity, ()):
        expected = level * factor + offset
        if abs(value - expected) <= max(0.05 * abs(expected), 0.02 * abs(value - level)):
            return unit
    return None


def mixed_units(name: str, quantity: str, spikes: list[tuple[float, float]],
                readings: int) -> Finding | None:
    """Most spikes are the neighbours' value in another unit: some readings come in it."""
    units = [converted(quantity, level, value) for value, level in spikes]
    hits = [u for u in units if u is not None]
    if len(hits) < SPIKES_FAULTY or 3 * len(hits) < 2 * len(spikes):
        return None
    unit = max(set(hits), key=hits.count)
    return Finding(
        "mixed_units",
        1.0,
        {"in_other_unit": len(hits), "readings": readings},
        f"{name} sends some readings in {unit} without saying so: {len(hits)} of its last "
        f"{readings} were the same value in {unit}.",
    )


def spiky(
    name: str, values: Sequence[float], base_scale: float | None, floor: float,
    quantity: str = "",
) -> Finding | None:
    """Spikes in the window, measured against the series' own step spread."""
    if len(values) < 10 or len(set(values)) <= 3:
        return None  # binary and three-level series (motion, a switch) jump by nature
    current = robust_scale(steps(values))
    scale = max(base_scale or 0.0, current)  # a noisy window is no spiky one
    found = spikes_of(values, scale, floor)
    spikes = len(found)
    if spikes < SPIKES_SUSPECT:
        return None
    mixed = mixed_units(name, quantity, found, len(values))
    if mixed is not None:
        return mixed
    return Finding(
        "spiky",
        1.0 if spikes >= SPIKES_FAULTY else 0.6,
        {"spikes": spikes, "readings": len(values), "step_scale": scale},
        f"{name} is spiky: {spikes} of its last {len(values)} readings jumped more than "
        f"{fmt(max(SPIKE_SIGMAS * scale, floor))} away and straight back.",
    )


def noisy(name: str, values: Sequence[float], base_scale: float | None) -> Finding | None:
    """The robust spread of steps far above the series' own history."""
    if base_scale is None or base_scale <= 0 or len(values) < 20 or len(set(values)) <= 3:
        return None
    scale = robust_scale(steps(values))
    ratio = scale / base_scale
    if ratio < NOISE_FAULTY / 2:
        return None
    return Finding(
        "noisy",
        1.0 if ratio >= NOISE_FAULTY else 0.6,
        {"step_scale": scale, "usual_step_scale": base_scale, "ratio": ratio},
        f"{name} is noisy: its readings jump {fmt(ratio)} times as much as they usually do.",
    )


def out_of_range(name: str, flags: Sequence[bool], last_bad: float | None) -> Finding | None:
    """Readings outside the plausible range among the most recent ones."""
    recent = list(flags)[-RANGE_WINDOW:]
    bad = sum(recent)
    if bad < RANGE_SUSPECT or not recent:
        return None
    tail = "" if last_bad is None else f", the last {fmt(last_bad)}"
    return Finding(
        "out_of_range",
        1.0 if bad >= RANGE_FAULTY else 0.5,
        {"out_of_range": bad, "readings": len(recent), "rate": bad / len(recent)},
        f"{name} sent {bad} of its last {len(recent)} readings outside the plausible range{tail}.",
    )


def wrong_unit(
    name: str, quantity: str, before: Sequence[float], after: Sequence[float]
) -> Finding | None:
    """The level jumped by exactly what a unit conversion does, and stayed there."""
    if len(before) < 10 or len(after) < 5:
        return None
    old, new = statistics.median(before), statistics.median(after)
    spread = max(robust_scale(before), robust_scale(after), 1e-9)
    if abs(new - old) < 10 * spread or robust_scale(after) > 0.2 * abs(new - old):
        return None
    for unit, factor, offset in CONVERSIONS.get(quantity, ()):
        expected = old * factor + offset
        tolerance = max(0.05 * abs(expected), 0.02 * abs(new - old), 4 * robust_scale(after))
        if abs(new - expected) <= tolerance:
            return Finding(
                "wrong_unit",
                1.0,
                {"before": old, "after": new, "expected_in_unit": expected},
                f"{name} jumped from {fmt(old)} to {fmt(new)}, which is the same value in "
                f"{unit}: the sensor seems to report in another unit without saying so.",
            )
    return None


def drift(
    name: str,
    residuals: Sequence[float],
    baseline: float,
    tolerance: float,
    reference: str,
) -> Finding | None:
    """The difference to a reference of the same room walks away from where it used to be.
    ``residuals`` are this series minus the reference over the recent window."""
    if len(residuals) < 10 or tolerance <= 0:
        return None
    offset = statistics.median(residuals) - baseline
    ratio = abs(offset) / tolerance
    if ratio < 0.5:
        return None
    way = "higher" if offset > 0 else "lower"
    return Finding(
        "drift",
        ratio if ratio < 1 else 1.0 + (ratio - 1) * 0.01,
        {"offset": offset, "tolerance": tolerance, "usual_difference": baseline},
        f"{name} has drifted: it now reads {fmt(abs(offset))} {way} against {reference} than "
        f"it used to.",
    )
