"""Runs the layers in order (guard, normalise, templates, fuzzy names), else hands to the model."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from agent.nlu import fuzzy
from agent.nlu.config import IntentsConfig
from agent.nlu.entities import Entity, entities_from
from agent.nlu.guard import refusal_reason
from agent.nlu.mapping import Mapped, ambiguity, map_hit
from agent.nlu.normalise import Normalised, normalise
from agent.nlu.polarity import polarity
from agent.nlu.questions import out_of_range, unknown_device
from agent.nlu.result import Ambiguity, Match, NoMatch, Outcome, Refusal
from agent.nlu.templates import Hit, Templates
from agent.nlu.vocabulary import with_translations
from agent.words import unknown_phrase

MAX_TEXT = 500
_CJK = re.compile(r"[\u3400-\u9fff]")
# words and letters that English requests do not use: enough to say which language to answer in
_GERMAN = re.compile(r"[äöüß]|\b(schalte|schalt|mach|mache|stelle|stell|dimme|öffne|schließe|"
                     r"heize|kühle|bitte|das|die|der|den|ein|aus|auf|nicht)\b")
DELTA_REASON = ("a change by {d:g} degrees needs the current setpoint, which is not known here; "
                "say the temperature you want (for example 'heat the lounge to 23 degrees')")


class Understander:
    """Built once from the config: the templates of the configured languages, the entities."""

    def __init__(self, config: IntentsConfig, actuators: Iterable[Mapping[str, Any]]) -> None:
        self.config = config
        # devices named in English also answer to their names in the other languages
        self.entities: list[Entity] = entities_from(with_translations(actuators,
                                                                      config.languages))
        self.by_key = {e.key: e for e in self.entities}
        self.templates = Templates(config.languages, self.entities)

    def understand(self, text: str) -> Outcome:
        if not text.strip():
            return Refusal("the request is empty")
        if len(text) > MAX_TEXT:
            return Refusal(f"the request is longer than {MAX_TEXT} characters")
        langs = self._order(text)
        said = {lang: normalise(text, lang) for lang in langs}
        guard = refusal_reason(said[langs[0]].text, langs)
        if guard is not None:
            return Refusal(*guard)
        for lang in langs:
            if said[lang].delta is not None:
                return Refusal(DELTA_REASON.format(d=said[lang].delta), lang)
        for lang in langs:
            outcome = self._templates(said[lang].text, lang)
            if outcome is not None:
                return outcome
        for lang in langs:
            outcome = self._fuzzy(said[lang].text, lang)
            if outcome is not None:
                return outcome
        return self._no_match(said[langs[0]], langs[0])

    def _order(self, text: str) -> list[str]:
        """The configured languages, the one the request looks written in first."""
        langs = list(self.templates.languages)
        if _CJK.search(text):  # Chinese script first when the request is written in it
            langs.sort(key=lambda lang: not lang.startswith("zh"))
        elif _GERMAN.search(text.lower()):
            langs.sort(key=lambda lang: not lang.startswith("de"))
        return langs

    def _templates(self, text: str, lang: str, layer: str | None = None) -> Mapped | None:
        hits = self.templates.match(text, lang)
        if not hits:
            return None
        # a template may fix name to a word of its own ("all"): only our keys name an entity
        named = [h for h in hits if h.slots.get("name") in self.by_key]
        keys = {h.slots["name"] for h in named}
        if len(keys) > 1:
            return ambiguity([self.by_key[k] for k in sorted(keys)], lang)
        outcomes = [self._map(h, text, lang, layer) for h in named + [h for h in hits
                                                                        if h not in named]]
        for kind in (Match, Ambiguity, Refusal):
            for outcome in outcomes:
                if isinstance(outcome, kind):
                    return outcome
        return None

    def _map(self, hit: Hit, text: str, lang: str, layer: str | None) -> Mapped:
        name = layer or ("own-templates" if hit.own else "templates")
        return map_hit(hit, self.by_key, text, lang, name)

    def _fuzzy(self, text: str, lang: str) -> Mapped | None:
        for _intent, spoken in self.templates.unmatched_names(text, lang):
            if not spoken:
                continue
            close = fuzzy.closest(spoken, self.entities, self.config.fuzzy_min,
                                  self.config.fuzzy_margin)
            if len(close) > 1:
                return ambiguity(close, lang)
            if close:
                fixed = text.replace(spoken, fuzzy.spoken_name(close[0], spoken), 1)
                outcome = self._templates(fixed, lang, "fuzzy")
                if outcome is not None:
                    return outcome
        return None

    def _no_match(self, said: Normalised, lang: str) -> NoMatch | Refusal:
        """The model's turn, unless no answer it could give would pass ``check_answer``."""
        candidates = fuzzy.mentioned(said.text, self.entities, self.config.fuzzy_min)
        if not candidates:
            known = ", ".join(e.name for e in self.entities[:8])
            return Refusal(unknown_device(unknown_phrase(said.text), known, lang), lang)
        ranged = [e for e in candidates if e.value_actions]
        if said.numbers and ranged and not any(e.in_range(n) for e in ranged
                                               for n in said.numbers):
            e = ranged[0]
            return Refusal(out_of_range(said.numbers[0], e.value_min or 0.0, e.value_max or 0.0,
                                        e.name, lang), lang)
        return NoMatch(said.text, lang, tuple(candidates), said.numbers, polarity(said.text))
