"""Names said with a typo ("ktichen lamp") -> the entity meant, or the close ones to ask about."""

from __future__ import annotations

import re

from rapidfuzz import fuzz

from agent.nlu.entities import Entity


def scores(spoken: str, entities: list[Entity]) -> list[tuple[float, Entity]]:
    """Best score of each entity over all its names, highest first."""
    said = spoken.lower().strip()
    best = [(max(fuzz.ratio(said, n.lower()) for n in e.names), e) for e in entities]
    return sorted(best, key=lambda pair: -pair[0])


def closest(spoken: str, entities: list[Entity], min_score: float, margin: float) -> list[Entity]:
    """One entity when it stands out; several when they are within ``margin``; none below
    ``min_score``."""
    ranked = scores(spoken, entities)
    if not ranked or ranked[0][0] < min_score:
        return []
    top = ranked[0][0]
    return [e for score, e in ranked if score >= top - margin]


def mentioned(text: str, entities: list[Entity], min_score: float) -> list[Entity]:
    """Entities some part of the text names (or whose area it names), for the model."""
    said = text.lower()
    named = [e for e in entities
             if max(fuzz.partial_ratio(n.lower(), said) for n in e.names) >= min_score]
    return named or [e for e in entities if any(_says(said, a) for a in e.areas)]


def _says(text: str, phrase: str) -> bool:
    if phrase.isascii():
        return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None
    return phrase in text


def spoken_name(entity: Entity, spoken: str) -> str:
    """The entity's name closest to what was said, to put back into the sentence."""
    return max(entity.names, key=lambda n: fuzz.ratio(spoken.lower(), n.lower()))
