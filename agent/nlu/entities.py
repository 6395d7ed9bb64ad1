"""The agent's actuators as entities a sentence can name: names, areas, domain, value range."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.actionvalues import value_actions

# words that say what kind of device a name is; what comes before them is the area
_KIND_WORDS = {
    "light": ("light", "lights", "lamp", "lamps", "licht", "lampe", "leuchte", "灯"),
    "fan": ("fan", "ventilator", "lüfter", "风扇"),
    "lock": ("lock", "schloss", "锁", "门锁"),
    "valve": ("valve", "sprinkler", "water", "ventil", "bewässerung", "阀门", "水阀"),
    "climate": (
        "air conditioning", "ac", "hvac", "heating", "heater", "climate", "thermostat",
        "heizung", "klimaanlage", "thermostat", "空调", "暖气",
    ),
    "cover": ("blind", "blinds", "shutter", "curtain", "cover", "rollladen", "窗帘"),
}
_SEP = re.compile(r"[-_\s]+")


@dataclass(frozen=True, slots=True)
class Entity:
    device: str
    actuator: str
    name: str
    aliases: tuple[str, ...]
    actions: tuple[str, ...]
    value_min: float | None = None
    value_max: float | None = None
    value_actions: tuple[str, ...] = ()  # the actions the range belongs to
    areas: tuple[str, ...] = ()  # said or derived from the names ("kitchen light" -> kitchen)
    domain: str = "switch"  # Home Assistant's word for the kind of device

    @property
    def key(self) -> str:
        return f"{self.device}/{self.actuator}"

    @property
    def names(self) -> tuple[str, ...]:
        """Every name it answers to: name, aliases, device id in words, device + actuator."""
        spoken = _SEP.sub(" ", self.device).strip()
        all_names = [self.name, *self.aliases, spoken, f"{spoken} {self.actuator}"]
        return tuple(dict.fromkeys(n.strip() for n in all_names if n.strip()))

    def takes_value(self, action: str) -> bool:
        return action in self.value_actions

    def in_range(self, value: float) -> bool:
        lo = self.value_min if self.value_min is not None else float("-inf")
        hi = self.value_max if self.value_max is not None else float("inf")
        return lo <= value <= hi


def domain_of(actions: Iterable[str], words: str) -> str:
    acts = set(actions)
    if {"lock", "unlock"} & acts:
        return "lock"
    if {"open", "close"} & acts:
        return "valve" if _kind_in(words, "valve") else "cover"
    if {"cool", "heat", "setpoint", "temperature"} & acts:
        return "climate"
    if "brightness" in acts or _kind_in(words, "light"):
        return "light"
    return "fan" if _kind_in(words, "fan") else "switch"


def _kind_in(words: str, kind: str) -> bool:
    text = words.lower()
    return any(re.search(rf"(^|[\s_-]){re.escape(w)}($|[\s_-])", text) or
               (not w.isascii() and w in text) for w in _KIND_WORDS[kind])


def area_of(name: str) -> str | None:
    """``"kitchen light"`` -> ``"kitchen"``; ``"厨房灯"`` -> ``"厨房"``; None when no kind word."""
    text = name.strip().lower()
    for kinds in _KIND_WORDS.values():
        for w in sorted(kinds, key=len, reverse=True):
            if w.isascii() and text.endswith(" " + w):
                return text[: -len(w) - 1].strip() or None
            if not w.isascii() and text.endswith(w) and len(text) > len(w):
                return text[: -len(w)].rstrip("的") or None
    return None


def entity_from(data: Mapping[str, Any]) -> Entity:
    """One actuator as plain data: device, actuator, name, aliases, actions, value (a mapping
    with min, max and the actions it belongs to), optional area."""
    device, actuator = str(data["device"]), str(data["actuator"])
    name = str(data.get("name") or f"{_SEP.sub(' ', device)} {actuator}")
    aliases = tuple(str(a) for a in data.get("aliases") or ())
    actions = tuple(str(a) for a in data["actions"])
    value = data.get("value") or {}
    listed = value.get("actions")
    takes = value_actions(list(actions), None if listed is None else list(listed)) if value else []
    areas = [data["area"]] if data.get("area") else []
    areas += [a for a in (area_of(n) for n in (name, *aliases)) if a]
    words = " ".join([name, *aliases, device, actuator])
    return Entity(
        device=device,
        actuator=actuator,
        name=name,
        aliases=aliases,
        actions=actions,
        value_min=None if value.get("min") is None else float(value["min"]),
        value_max=None if value.get("max") is None else float(value["max"]),
        value_actions=tuple(takes),
        areas=tuple(dict.fromkeys(str(a).lower() for a in areas)),
        domain=str(data.get("domain") or domain_of(actions, words)),
    )


def entities_from(items: Iterable[Mapping[str, Any]]) -> list[Entity]:
    return [entity_from(item) for item in items]
