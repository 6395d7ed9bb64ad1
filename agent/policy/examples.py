"""Labelled situations generated from a policy's own targets and actions.

They train the ``embed`` head, run the fitness gate and score ``bench decide``. Training and
held-out sets differ in seed and can differ in bands and in how inputs are named, so accuracy
on them says how far the engine generalises.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from agent.config import Config, PolicyConfig
from agent.policy.digest import InputView, Zone, make_digest, zone

LABEL_STYLES = ("device", "room", "plain", "place", "in")
HELD_OUT_STYLES = ("the", "sensor")
PLACES = (
    "office",
    "studio",
    "attic",
    "cellar",
    "nursery",
    "lobby",
    "workshop",
    "den",
    "loft",
    "pantry",
    "porch",
    "guest room",
    "library",
    "gym",
    "greenhouse",
    "server room",
)


@dataclass(frozen=True, slots=True)
class Example:
    digest: str
    zone: Zone
    action: str
    value: float  # the primary input's value
    band: tuple[float, float]


def label(device: str, quantity: str, style: str, other: str = "office") -> str:
    """How an input is named in a digest; ``other`` is a place name unrelated to the device."""
    place = device.rsplit("-", 1)[0].replace("-", " ").replace("_", " ")
    return {
        "device": f"{device} {quantity}",
        "room": f"room {quantity}",
        "plain": quantity,
        "place": f"{other} {quantity}",
        "in": f"{quantity} in the {other}",
        "the": f"the {place} {quantity}",
        "sensor": f"{quantity} at sensor {device}",
    }[style]


def primary_target(policy: PolicyConfig) -> tuple[str, tuple[float, float]]:
    key, band = next(iter(policy.targets.items()))
    return key, band


def action_for(policy: PolicyConfig, z: Zone) -> str:
    respond = policy.actuators[0].responses
    assert respond is not None  # checked by the config for policies with targets
    return getattr(respond, z) or respond.inside


def sample_value(rng: random.Random, band: tuple[float, float]) -> float:
    lo, hi = band
    width = hi - lo
    r = rng.random()
    if r < 0.3:  # near an edge, both sides
        return rng.choice((lo, hi)) + rng.uniform(-0.15, 0.15) * width
    return rng.uniform(lo - 1.5 * width, hi + 1.5 * width)


def generate(
    config: Config,
    policy: PolicyConfig,
    n: int,
    *,
    seed: int,
    styles: tuple[str, ...] = LABEL_STYLES,
    shift_bands: bool = False,
) -> list[Example]:
    """``n`` situations with their right action; ``shift_bands`` moves the band each time."""
    rng = random.Random(seed)
    key, own = primary_target(policy)
    out = []
    for _ in range(n):
        band = own
        if shift_bands:
            offset, stretch = rng.uniform(-6, 6), rng.uniform(0.5, 1.5)
            mid, half = sum(own) / 2 + offset, (own[1] - own[0]) / 2 * stretch
            band = (round(mid - half, 1), round(mid + half, 1))
        style = rng.choice(styles)
        other = rng.choice(PLACES)
        value = round(sample_value(rng, band), 1)
        views = []
        for inp in policy.inputs:
            device, quantity = inp.split("/")
            unit = config.sensors[quantity].unit if quantity in config.sensors else None
            if inp == key:
                views.append(
                    InputView(
                        label(device, quantity, style, other),
                        value,
                        unit,
                        band,
                        rng.uniform(-0.5, 0.5),
                    )
                )
            else:
                views.append(
                    InputView(
                        label(device, quantity, style, other),
                        other_value(config, quantity, rng),
                        unit,
                    )
                )
        z = zone(value, band)
        out.append(Example(make_digest(views), z, action_for(policy, z), value, band))
    return out


def other_value(config: Config, quantity: str, rng: random.Random) -> float:
    sensor = config.sensors.get(quantity)
    if sensor is not None and sensor.range is not None:
        lo, hi = sensor.range
        return round(rng.uniform(lo + 0.2 * (hi - lo), hi - 0.5 * (hi - lo)), 1)
    return round(rng.uniform(0, 100), 1)
