"""Names in the other configured languages for devices named in English ("kitchen light" ->
"Küchenlicht", "Licht Küche", "厨房灯"), from a small table of rooms and device kinds.

A home's people speak several languages but its configuration names each device once. The
template collection knows the verbs of every language; this table gives it the nouns. Only a
name made of a known room and a known kind is translated; aliases the owner wrote win.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# room -> per language: (the word, its German compound stem when it differs)
ROOMS: dict[str, dict[str, tuple[str, ...]]] = {
    "kitchen": {"de": ("Küche", "Küchen"), "zh": ("厨房",)},
    "living room": {"de": ("Wohnzimmer",), "zh": ("客厅",)},
    "lounge": {"de": ("Wohnzimmer",), "zh": ("客厅",)},
    "bedroom": {"de": ("Schlafzimmer",), "zh": ("卧室",)},
    "bathroom": {"de": ("Badezimmer", "Bad"), "zh": ("浴室",)},
    "hall": {"de": ("Flur",), "zh": ("走廊",)},
    "hallway": {"de": ("Flur",), "zh": ("走廊",)},
    "garden": {"de": ("Garten",), "zh": ("花园",)},
    "garage": {"de": ("Garage",), "zh": ("车库",)},
    "office": {"de": ("Büro",), "zh": ("办公室",)},
    "dining room": {"de": ("Esszimmer",), "zh": ("餐厅",)},
    "nursery": {"de": ("Kinderzimmer",), "zh": ("儿童房",)},
}
KINDS: dict[str, dict[str, tuple[str, ...]]] = {
    "light": {"de": ("Licht", "Lampe"), "zh": ("灯",)},
    "lamp": {"de": ("Lampe", "Licht"), "zh": ("灯",)},
    "fan": {"de": ("Ventilator", "Lüfter"), "zh": ("风扇",)},
    "air conditioning": {"de": ("Klimaanlage",), "zh": ("空调",)},
    "ac": {"de": ("Klimaanlage",), "zh": ("空调",)},
    "heating": {"de": ("Heizung",), "zh": ("暖气",)},
    "heater": {"de": ("Heizung",), "zh": ("暖气",)},
    "valve": {"de": ("Ventil",), "zh": ("阀门",)},
    "water valve": {"de": ("Wasserventil", "Ventil"), "zh": ("水阀",)},
    "sprinkler": {"de": ("Rasensprenger",), "zh": ("洒水器",)},
    "door lock": {"de": ("Türschloss",), "zh": ("门锁",)},
    "lock": {"de": ("Schloss",), "zh": ("锁",)},
    "blinds": {"de": ("Rollladen",), "zh": ("窗帘",)},
}


def _split(name: str) -> tuple[str, str] | None:
    """``"kitchen light"`` -> ("kitchen", "light") when both parts are in the table."""
    text = " ".join(name.lower().split())
    for kind in sorted(KINDS, key=len, reverse=True):
        if text.endswith(" " + kind):
            room = text[: -len(kind) - 1].strip()
            if room in ROOMS:
                return room, kind
    return None


def names_in(language: str, name: str) -> list[str]:
    """The name in ``language`` ("de", "zh-CN", ...), most natural first; [] if unknown."""
    parts = _split(name)
    lang = language.split("-")[0].lower()
    if parts is None or lang not in ("de", "zh"):
        return []
    room_words, kind_words = ROOMS[parts[0]][lang], KINDS[parts[1]][lang]
    if lang == "zh":
        return [room_words[0] + k for k in kind_words]
    room, stem = room_words[0], room_words[-1]
    out = []
    for kind in kind_words:
        out += [stem + kind.lower(), f"{room} {kind}", f"{kind} {room}"]
    return out


def with_translations(actuators: Iterable[Mapping[str, Any]],
                      languages: Iterable[str]) -> list[dict[str, Any]]:
    """The actuators with aliases added for each configured language other than English."""
    langs = [lang for lang in languages if not lang.lower().startswith("en")]
    out = []
    for actuator in actuators:
        item = dict(actuator)
        names = [str(n) for n in (item.get("name"), *(item.get("aliases") or ())) if n]
        extra = [t for lang in langs for n in names for t in names_in(lang, n)]
        own = {str(a).lower() for a in names}
        item["aliases"] = list(dict.fromkeys(
            [*(item.get("aliases") or ()), *(t for t in extra if t.lower() not in own)]))
        out.append(item)
    return out
