"""What the model's answer must pass: it agrees with the request's own words, or is refused."""

from __future__ import annotations

from agent.nlu.mapping import command
from agent.nlu.result import Match, NoMatch, Refusal

# actions that are one another's opposite: a word for one never yields the other
_OPPOSITE = {"on": "off", "off": "on", "open": "close", "close": "open", "lock": "unlock",
             "unlock": "lock", "heat": "cool", "cool": "heat"}


def check_answer(request: NoMatch, device: str, actuator: str, action: str,
                 value: float | None) -> Match | Refusal:
    """The model chose (device, actuator, action, value) for a request no template matched."""
    lang = request.language
    entity = next((e for e in request.candidates if e.device == device and
                   e.actuator == actuator), None)
    if entity is None:
        names = ", ".join(e.name for e in request.candidates) or "no known device"
        return Refusal(f"the answer names {device}/{actuator}, but the request names {names}",
                       lang)
    said = request.polarity
    opposed = _OPPOSITE.get(action) in said or not said & set(entity.actions)
    if said and action not in said and opposed:
        return Refusal(f"the request says {'/'.join(sorted(said))}, the answer {action}", lang)
    if value is not None and value not in request.numbers:
        return Refusal(f"the answer's value {value:g} is not a number the request says", lang)
    if value is None and request.numbers and entity.takes_value(action):
        return Refusal(f"the request says {request.numbers[0]:g}, the answer has no value", lang)
    result = command(entity, action, value)
    if isinstance(result, Refusal):
        return Refusal(result.reason, lang)
    return Match((result,), lang, "model", "model")
