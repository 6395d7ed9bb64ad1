"""Home Assistant's sentence templates (and the project's) for the configured languages, loaded
once, matched with hassil against the agent's entities. The one importer of hassil and
home-assistant-intents."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hassil import Intents, recognize_all
from hassil.intents import SlotList, TextSlotList
from home_assistant_intents import get_intents, get_languages

from agent.errors import AgentError
from agent.nlu.entities import Entity
from agent.nlu.own_templates import OWN_INTENTS, own_templates

log = logging.getLogger(__name__)

SUPPORTED = ("HassTurnOn", "HassTurnOff", "HassLightSet", "HassClimateSetTemperature",
             "HassSetPosition")
_EMPTY_LISTS = ("floor", "zone")


@dataclass(frozen=True, slots=True)
class Hit:
    """One template match, reduced to what mapping needs."""

    intent: str  # Home Assistant's name (own intents mapped onto theirs)
    slots: dict[str, Any]  # name -> entity key, area, domain, brightness, temperature, mode
    own: bool  # matched one of the project's templates


def available_languages() -> set[str]:
    return set(get_languages())


def load_language(lang: str) -> Intents:
    data = get_intents(lang)
    if data is None:
        raise AgentError(f"intents: no sentence templates for language {lang!r}")
    data["intents"] = {k: v for k, v in data["intents"].items() if k in SUPPORTED}
    data.pop("responses", None)
    own = own_templates(lang)
    data["intents"].update(own["intents"])
    data["lists"].update(own["lists"])
    return Intents.from_dict(data)


class Templates:
    """The compiled templates of the configured languages and the entity slot lists."""

    def __init__(self, languages: Iterable[str], entities: list[Entity]) -> None:
        self.languages = list(languages)
        self.intents = {lang: load_language(lang) for lang in self.languages}
        self.entities = {e.key: e for e in entities}
        self.slot_lists = slot_lists(entities)
        for lang in self.languages:  # hassil parses templates on first use: do it now, once
            self.match("", lang)

    def match(self, text: str, lang: str) -> list[Hit]:
        results = recognize_all(text, self.intents[lang], slot_lists=self.slot_lists,
                                language=lang)
        return _unique(_hit(r) for r in results)

    def unmatched_names(self, text: str, lang: str) -> list[tuple[str, str]]:
        """(intent, spoken name) for templates that match all but the entity's name."""
        found = []
        for r in recognize_all(text, self.intents[lang], slot_lists=self.slot_lists,
                               language=lang, allow_unmatched_entities=True):
            name = r.unmatched_entities.get("name") or r.unmatched_entities.get("area")
            if name is not None and not r.entities.get("name"):
                found.append((r.intent.name, str(getattr(name, "text", "")).strip()))
        return list(dict.fromkeys(found))


def slot_lists(entities: list[Entity]) -> dict[str, SlotList]:
    names = [(n, e.key, {"domain": e.domain}) for e in entities for n in e.names]
    areas = sorted({a for e in entities for a in e.areas})
    lists: dict[str, SlotList] = {
        "name": TextSlotList.from_tuples(names, allow_template=False),
        "area": TextSlotList.from_tuples([(a, a) for a in areas], allow_template=False),
    }
    for empty in _EMPTY_LISTS:
        lists[empty] = TextSlotList.from_strings([])
    return lists


def _hit(result: Any) -> Hit:
    slots = {k: e.value for k, e in result.entities.items()}
    for key, value in (result.intent_data.slots or {}).items():
        slots.setdefault(key, value)
    name = result.intent.name
    return Hit(OWN_INTENTS.get(name, name), slots, name in OWN_INTENTS)


def _unique(hits: Iterable[Hit]) -> list[Hit]:
    seen: dict[str, Hit] = {}
    for hit in hits:
        seen.setdefault(f"{hit.intent}{sorted(hit.slots.items(), key=str)}", hit)
    return list(seen.values())
