"""The project's own sentence templates, in hassil's format, for what Home Assistant's lack:
heating or cooling to a setpoint ("heat the lounge to 23 degrees"), "too warm", dimming, and
stopping water. They reuse the collection's lists and expansion rules; their intents start
with ``Edge`` and map onto Home Assistant's (``OWN_INTENTS``)."""

from __future__ import annotations

from typing import Any

OWN_INTENTS = {"EdgeClimateMode": "EdgeClimateMode", "EdgeLightSet": "HassLightSet",
               "EdgeTurnOn": "HassTurnOn", "EdgeTurnOff": "HassTurnOff"}

_DEG = {"en": "[ degrees| degree|°]", "de": "[ Grad|°]", "zh": "[度|摄氏度]"}
_PCT = {"en": "[([ ]%)| percent]", "de": "[([ ]%)| Prozent]", "zh": "[%]"}

_EN: dict[str, Any] = {
    "lists": {"climate_mode": {"values": [
        {"in": "heat", "out": "heat"}, {"in": "heat up", "out": "heat"},
        {"in": "warm", "out": "heat"}, {"in": "warm up", "out": "heat"},
        {"in": "cool", "out": "cool"}, {"in": "cool down", "out": "cool"},
        {"in": "chill", "out": "cool"}]}},
    "intents": {
        "EdgeClimateMode": {"data": [
            {"sentences": [
                "{climate_mode:mode} [<the>] {name} [to {temperature}DEG]",
                "{climate_mode:mode} [[it] (with|using)] [<the>] {name} [to {temperature}DEG]",
                "{climate_mode:mode} [<the>] {area} [to {temperature}DEG]",
                "(set|put|switch|turn) [<the>] {name} to {climate_mode:mode} [(at|to) "
                "{temperature}DEG]",
                "(set|put|switch|turn) [<the>] {area} to {climate_mode:mode} [(at|to) "
                "{temperature}DEG]",
                "[<set>] [<the>] {name} [to] {climate_mode:mode} [(at|to) {temperature}DEG]",
                "{climate_mode:mode} [it] [(down|up)] [<in>] [<the>] {area} [to {temperature}DEG]",
            ]},
            {"sentences": [
                "[it is] [(a bit|way|much)] too (warm|hot) [<in>] [<the>] {area} "
                "[[and|so] (cool [it] [down]|make it cooler) [to {temperature}DEG]]",
                "[<the>] {area} is too (warm|hot)",
                "make [<the>] {area} (cooler|colder)",
                "make [<the>] {name} (cooler|colder)",
            ], "slots": {"mode": "cool"}},
            {"sentences": [
                "[it is] [(a bit|way|much)] too (cold|cool|chilly) [<in>] [<the>] {area} "
                "[[and|so] (heat [it] [up]|warm [it] up|make it warmer) [to {temperature}DEG]]",
                "[<the>] {area} is too (cold|chilly)",
                "make [<the>] {area} (warmer|hotter)",
                "make [<the>] {name} (warmer|hotter)",
            ], "slots": {"mode": "heat"}},
        ]},
        "EdgeLightSet": {"data": [
            {"sentences": [
                "(dim|brighten|set) [<the>] {name} [brightness] to {brightness}PCT",
                "[<the>] {name} brightness [to] {brightness}PCT",
                "(dim|brighten) [<the>] {area} [<light>] to {brightness}PCT",
            ], "requires_context": {"domain": "light"}},
        ]},
        "EdgeTurnOff": {"data": [
            {"sentences": ["(stop|shut off|turn off|switch off) [<the>] {name}"],
             "requires_context": {"domain": ["valve"]}},
            {"sentences": ["(stop|shut off|turn off|switch off) [<the>] {area} (water|watering|"
                           "sprinkler[s]|irrigation)"], "slots": {"domain": "valve"}},
        ]},
        "EdgeTurnOn": {"data": [
            {"sentences": ["(start|turn on|switch on) [<the>] {name}"],
             "requires_context": {"domain": ["valve"]}},
            {"sentences": ["(start|turn on|switch on) [<the>] {area} (water|watering|"
                           "sprinkler[s]|irrigation)"], "slots": {"domain": "valve"}},
        ]},
    },
}

_DE: dict[str, Any] = {
    "lists": {"climate_mode": {"values": [
        {"in": "heize", "out": "heat"}, {"in": "heizen", "out": "heat"},
        {"in": "wärme", "out": "heat"}, {"in": "kühle", "out": "cool"},
        {"in": "kühlen", "out": "cool"}]}},
    "intents": {
        "EdgeClimateMode": {"data": [
            {"sentences": [
                "{climate_mode:mode} [<artikel_bestimmt> ]{name}[ auf {temperature}DEG]",
                "{climate_mode:mode} <area>[ auf {temperature}DEG]",
                "[<artikel_bestimmt> ]{name} auf {temperature}DEG {climate_mode:mode}",
            ]},
            {"sentences": ["es ist <area> zu (warm|heiß)", "es ist zu (warm|heiß) <area>",
                           "<area> ist es zu (warm|heiß)"], "slots": {"mode": "cool"}},
            {"sentences": ["es ist <area> zu kalt", "es ist zu kalt <area>",
                           "<area> ist es zu kalt"], "slots": {"mode": "heat"}},
        ]},
        "EdgeLightSet": {"data": [
            {"sentences": ["dimme [<artikel_bestimmt> ]{name} auf {brightness}PCT"],
             "requires_context": {"domain": "light"}},
        ]},
    },
}

_ZH: dict[str, Any] = {
    "lists": {"climate_mode": {"values": [
        {"in": "制热", "out": "heat"}, {"in": "加热", "out": "heat"}, {"in": "升温", "out": "heat"},
        {"in": "制冷", "out": "cool"}, {"in": "降温", "out": "cool"}]}},
    "intents": {
        "EdgeClimateMode": {"data": [
            {"sentences": [
                "[把|将|让|给]{name}[的][空调]{climate_mode:mode}[(到|至|为){temperature}DEG]",
                "[把|将|让|给]{area}[的][空调]{climate_mode:mode}[(到|至|为){temperature}DEG]",
            ]},
            {"sentences": ["{area}(太热|好热)[了]"], "slots": {"mode": "cool"}},
            {"sentences": ["{area}(太冷|好冷)[了]"], "slots": {"mode": "heat"}},
        ]},
        "EdgeLightSet": {"data": [
            {"sentences": ["[把|将]{name}调(暗|亮)(到|至|为)[百分之]{brightness}PCT"],
             "requires_context": {"domain": "light"}},
        ]},
    },
}

_ALL = {"en": _EN, "de": _DE, "zh": _ZH}


def own_templates(lang: str) -> dict[str, Any]:
    """The project's templates for a language code ("zh-CN" -> zh), units filled in."""
    base = lang.split("-")[0]
    data = _ALL.get(base)
    if data is None:
        return {"intents": {}, "lists": {}}
    filled: dict[str, Any] = _fill(data, base)
    return filled


def _fill(data: Any, base: str) -> Any:
    if isinstance(data, str):
        return data.replace("DEG", _DEG[base]).replace("PCT", _PCT[base])
    if isinstance(data, dict):
        return {k: _fill(v, base) for k, v in data.items()}
    if isinstance(data, list):
        return [_fill(v, base) for v in data]
    return data
