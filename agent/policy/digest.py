"""Features -> one short, deterministic sentence per decision: value, band, distance, trend.

The digest is what every engine sees ("Room temperature (target range 20-24 C): 27.5 C is
ABOVE by 3.5 C. Humidity: 55.0%. Trend: stable."). Spelling out the comparison is what
lets a small model's embedding separate the cases; the words are fixed so the same situation
always gives the same text. What stays the same from one reading to the next (the first input's
name and band) comes first, up to the first colon (``fixed_part``): the model is causal, so it
keeps the state of that part and evaluates only the rest of a new digest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Zone = Literal["above", "below", "inside"]


@dataclass(frozen=True, slots=True)
class InputView:
    """The latest state of one policy input."""

    label: str  # e.g. "livingroom-1 temperature" or "Room temperature"
    value: float
    unit: str | None
    band: tuple[float, float] | None = None
    slope_per_min: float | None = None


def zone(value: float, band: tuple[float, float]) -> Zone:
    lo, hi = band
    return "above" if value > hi else "below" if value < lo else "inside"


def amount(value: float, unit: str | None) -> str:
    if not unit:
        return f"{value:.1f}"
    return f"{value:.1f}{unit}" if unit == "%" else f"{value:.1f} {unit}"


def _band(band: tuple[float, float], unit: str | None) -> str:
    lo, hi = band
    return f"{lo:g}-{hi:g}{'' if not unit else unit if unit == '%' else ' ' + unit}"


def describe(inp: InputView) -> str:
    name = f"{inp.label[:1].upper()}{inp.label[1:]}"
    if inp.band is None:
        return f"{name}: {amount(inp.value, inp.unit)}."
    z = zone(inp.value, inp.band)
    head = f"{name} (target range {_band(inp.band, inp.unit)}): {amount(inp.value, inp.unit)} is"
    if z == "inside":
        return f"{head} INSIDE."
    edge = inp.band[1] if z == "above" else inp.band[0]
    return f"{head} {z.upper()} by {amount(abs(inp.value - edge), inp.unit)}."


def fixed_part(digest: str) -> str:
    """The digest up to its first colon: the first input's name (and band), the part that a
    policy's digests share; empty if there is no colon."""
    head, colon, _ = digest.partition(":")
    return head + colon if colon else ""


def trend(inp: InputView) -> str:
    """rising / falling / stable, relative to the band width (or 0.1 unit per minute)."""
    if inp.slope_per_min is None:
        return "stable"
    scale = 0.02 * (inp.band[1] - inp.band[0]) if inp.band else 0.1
    if abs(inp.slope_per_min) < scale:
        return "stable"
    return "rising" if inp.slope_per_min > 0 else "falling"


def make_digest(inputs: list[InputView]) -> str:
    """One sentence per input, then the trend of the first input with a band."""
    primary = next((i for i in inputs if i.band is not None), inputs[0])
    return " ".join([*(describe(i) for i in inputs), f"Trend: {trend(primary)}."])
