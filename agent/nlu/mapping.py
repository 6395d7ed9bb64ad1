"""A template match -> commands for the agent's actuators, or a question, or a refusal."""

from __future__ import annotations

import re

from agent.actionvalues import value_required
from agent.nlu.entities import Entity
from agent.nlu.polarity import polarity
from agent.nlu.questions import did_you_mean, heat_or_cool
from agent.nlu.result import Ambiguity, Command, Match, Refusal
from agent.nlu.templates import Hit

_ON = {"lock": "lock", "cover": "open", "valve": "open"}
_OFF = {"lock": "unlock", "cover": "close", "valve": "close"}
_SETPOINT = ("setpoint", "temperature")
_CJK = re.compile(r"[\u3400-\u9fff]")
Mapped = Match | Ambiguity | Refusal


def targets(hit: Hit, entities: dict[str, Entity]) -> list[Entity]:
    key = hit.slots.get("name")
    if isinstance(key, str) and key in entities:
        return [entities[key]]
    area = hit.slots.get("area")
    found = [e for e in entities.values() if area is not None and area in e.areas]
    domain = hit.slots.get("domain")
    if hit.intent in ("HassClimateSetTemperature", "EdgeClimateMode"):
        domain = "climate"
    if domain is not None:
        domains = {domain} if isinstance(domain, str) else set(domain)
        found = [e for e in found if e.domain in domains]
    return found


def action_of(hit: Hit, entity: Entity, text: str) -> str | None:
    """The actuator's action for the intent, or None when the words do not decide it."""
    if hit.intent == "HassTurnOn":
        return _ON.get(entity.domain, "on")
    if hit.intent == "HassTurnOff":
        return _OFF.get(entity.domain, "off")
    if hit.intent == "HassLightSet":
        return "brightness" if "brightness" in entity.actions else "on"
    if hit.intent == "HassSetPosition":
        return "position"
    if hit.intent == "EdgeClimateMode":
        return str(hit.slots.get("mode"))
    # HassClimateSetTemperature: a setpoint action, else the mode the words say
    setpoint = next((a for a in _SETPOINT if a in entity.actions), None)
    if setpoint is not None:
        return setpoint
    modes = polarity(text) & {"heat", "cool"}
    return next(iter(modes)) if len(modes) == 1 else None


def value_of(hit: Hit) -> float | None:
    for slot in ("brightness", "temperature", "position"):
        value = hit.slots.get(slot)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def command(entity: Entity, action: str, value: float | None) -> Command | Refusal:
    if action not in entity.actions:
        return Refusal(f"the {entity.name} cannot {action}: it can {', '.join(entity.actions)}")
    if value is not None and not entity.takes_value(action):
        return Refusal(f"{action} on the {entity.name} takes no value, got {value:g}")
    if value is None and value_required(action, entity.value_actions):
        return Refusal(f"{action} on the {entity.name} needs a value: say how much, for example "
                       f"'{action} the {entity.name} to {_example(entity):g}'")
    if value is not None and not entity.in_range(value):
        return Refusal(command_range(entity, value))
    return Command(entity.device, entity.actuator, action, value)


def _example(entity: Entity) -> float:
    lo, hi = entity.value_min or 0.0, entity.value_max if entity.value_max is not None else 100.0
    return round((lo + hi) / 2)


def command_range(entity: Entity, value: float) -> str:
    return (f"{value:g} is outside {entity.value_min:g} to {entity.value_max:g} "
            f"for the {entity.name}")


def map_hit(hit: Hit, entities: dict[str, Entity], text: str, lang: str, layer: str) -> Mapped:
    found = targets(hit, entities)
    if not found:
        return Refusal(f"no device of that kind in the {hit.slots.get('area') or 'request'}", lang)
    value = value_of(hit)
    commands: list[Command] = []
    refusals: list[Refusal] = []
    for entity in found:
        action = action_of(hit, entity, text)
        if action is None:
            if value is not None and not entity.in_range(value):
                return Refusal(command_range(entity, value), lang)
            name = label_for(entity, lang)
            return Ambiguity((entity.name,), heat_or_cool(name, value, lang), lang)
        result = command(entity, action, value)
        (commands if isinstance(result, Command) else refusals).append(result)  # type: ignore[arg-type]
    if not commands:
        return Refusal(refusals[0].reason, lang)
    return Match(tuple(commands), lang, layer, hit.intent)


def ambiguity(entities: list[Entity], lang: str) -> Ambiguity:
    labels = sorted({e.name for e in entities})
    spoken = sorted({label_for(e, lang) for e in entities})
    return Ambiguity(tuple(labels), did_you_mean(spoken, lang), lang)


def label_for(entity: Entity, lang: str) -> str:
    """The name to use in a reply: one written in Chinese script for a Chinese request."""
    if lang.startswith(("zh", "ja")):
        return next((n for n in entity.names if _CJK.search(n)), entity.name)
    return entity.name
