"""People's answers about a sensor's health, in words: "the livingroom thermometer is fine",
"yes, the kitchen humidity sensor is broken", "livingroom-1 temperature is ok".

A small parser with no model in it (like the intents' templates): a sentence is an answer only
if it names a kind of sensor and says fine or broken; the device is the one whose id the
sentence names, or whose id starts with a word of it ("livingroom" for ``livingroom-1``).
Anything else is not an answer and goes on to the actuator intents.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

CONFIRMED, DISMISSED = "confirmed", "dismissed"
#: words for a kind of sensor -> the quantity (longest first when matching)
QUANTITIES = {
    "thermometer": "temperature", "temperature sensor": "temperature",
    "temperature": "temperature", "hygrometer": "humidity", "humidity sensor": "humidity",
    "humidity": "humidity", "co2 sensor": "co2", "co2": "co2", "carbon dioxide": "co2",
    "light sensor": "light", "motion sensor": "motion", "power meter": "power",
}
_FINE = re.compile(r"\b(is|are|looks|seems|'s)\s+(fine|ok|okay|alright|all right|healthy|"
                   r"working|not broken|not faulty|not stuck)\b|\bnothing wrong\b|\bworks\b|"
                   r"\bfalse alarm\b")
_BROKEN = re.compile(r"\b(is|are|looks|seems|'s)\s+(really\s+)?(broken|faulty|defective|dead|"
                     r"stuck|wrong|not working)\b|\bbroke\b")


@dataclass(frozen=True, slots=True)
class Answer:
    verdict: str  # confirmed or dismissed
    key: str  # device/quantity


@dataclass(frozen=True, slots=True)
class Unclear:
    """An answer about a sensor that names none, or more than one, of the known series."""

    reason: str


def _quantity(text: str) -> tuple[str, str] | None:
    for words in sorted(QUANTITIES, key=len, reverse=True):
        if re.search(rf"\b{re.escape(words)}\b", text):
            return words, QUANTITIES[words]
    return None


def parse(text: str, series: Collection[str], unhealthy: Mapping[str, str] | None = None
          ) -> Answer | Unclear | None:
    """``series``: the known device/quantity keys; ``unhealthy``: those not ok (key -> fault),
    preferred when a name fits several devices. None: this is no answer about a sensor."""
    said = " ".join(text.lower().replace(",", " ").replace(".", " ").split())
    verdict = DISMISSED if _FINE.search(said) else CONFIRMED if _BROKEN.search(said) else None
    found = _quantity(said)
    if verdict is None or found is None:
        return None
    words, quantity = found
    rest = said.replace(words, " ")
    keys = [k for k in series if k.endswith(f"/{quantity}")]
    exact = [k for k in keys if re.search(rf"(^|\s){re.escape(k.split('/')[0])}(\s|$)", rest)]
    fits = exact or [k for k in keys if any(
        len(w) >= 3 and k.split("/")[0].startswith(w) for w in rest.split())]
    if len(fits) > 1 and unhealthy:
        fits = [k for k in fits if k in unhealthy] or fits
    if not fits:
        return Unclear(f"no {quantity} sensor that I diagnose fits {text.strip()!r}")
    if len(fits) > 1:
        return Unclear(f"which {quantity} sensor: {', '.join(sorted(fits))}?")
    return Answer(verdict, fits[0])
