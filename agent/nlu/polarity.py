"""Which actions the request's own words point to ("too warm" -> cool, "aus" -> off)."""

from __future__ import annotations

import re

# checked in order; a phrase found is removed so that "too warm" does not also say "warm"
_PHRASES: tuple[tuple[str, frozenset[str]], ...] = tuple(
    (p, frozenset(acts.split()))  # German "an", "ein", "auf", "zu" are also
    # articles and prepositions: only their unambiguous verbs count
    for group, acts in (
        ("too warm|too hot|zu warm|zu heiß|太热|好热", "cool"),
        ("too cold|too chilly|zu kalt|太冷|好冷", "heat"),
        ("unlock|aufschließen|aufsperren|entriegeln|解锁|开锁", "unlock"),
        ("lock|abschließen|absperren|verriegeln|zusperren|锁上|上锁", "lock"),
        ("heat|heating|warm|warmer|hotter|heizen|heize|wärmer|wärme|加热|制热|升温|调高", "heat"),
        ("cool|cooler|colder|chill|kühlen|kühle|kühler|kälter|制冷|降温|调低", "cool"),
        ("dim|brighten|brightness|helligkeit|dimme|dimmen|亮度|调暗|调亮", "brightness on"),
        ("turn off|switch off|shut off|stop|off|ausschalten|abschalten|关闭|关掉|关了",
         "off close stop idle"),
        ("close|shut|schließen|schließe|zumachen|合上", "close off"),
        ("open|öffnen|öffne|aufmachen|打开|开启", "open on"),
        ("turn on|switch on|start|on|einschalten|anschalten", "on open"),
    )
    for p in group.split("|")
)


def polarity(text: str) -> frozenset[str]:
    """Every action some polarity word in ``text`` (normalised) points to; empty if none."""
    rest, found = f" {text} ", set[str]()
    for phrase, actions in _PHRASES:
        if phrase.isascii() or any(c.isascii() and c.isalpha() for c in phrase):
            pattern = re.compile(rf"(?<![\w]){re.escape(phrase)}(?![\w])")
        else:
            pattern = re.compile(re.escape(phrase))
        if pattern.search(rest):
            found |= actions
            rest = pattern.sub(" ", rest)
    return frozenset(found)
