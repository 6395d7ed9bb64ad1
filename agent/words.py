"""The English words of a request: filler, action synonyms, negations, and the phrase left over."""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9]+")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
# words that say what to do, not which device: never enough to pick a device on their own
FILLER = frozenset(
    [
        "a",
        "an",
        "the",
        "my",
        "our",
        "your",
        "please",
        "could",
        "can",
        "would",
        "you",
        "will",
        "turn",
        "switch",
        "set",
        "put",
        "make",
        "get",
        "it",
        "to",
        "in",
        "on",
        "of",
        "off",
        "at",
        "for",
        "and",
        "then",
        "now",
        "up",
        "down",
        "all",
        "this",
        "that",
        "is",
        "be",
        "me",
        "i",
        "want",
        "let",
        "degrees",
        "degree",
        "percent",
        "c",
        "f",
        "bit",
        "little",
        "more",
        "less",
        "lights",
        "light",
    ]
)
SYNONYMS = {
    "off": ("off", "stop", "shut off", "switch off", "turn off", "power off", "disable"),
    "on": ("on", "start", "switch on", "turn on", "power on", "enable"),
    "cool": ("cool", "cooler", "colder", "cool down", "too hot", "air condition"),
    "heat": ("heat", "warmer", "warm up", "heat up", "too cold", "hotter"),
    "open": ("open",),
    "close": ("close", "shut"),
    "lock": ("lock",),
    "unlock": ("unlock",),
}


# words that negate what they stand next to ("n't" arrives as two words: "don", "t")
NEGATIONS = frozenset(
    [
        "not",
        "no",
        "never",
        "nope",
        "nor",
        "neither",
        "nothing",
        "none",
        "without",
        "dont",
        "doesnt",
        "didnt",
        "cannot",
        "cant",
        "wont",
        "shouldnt",
        "mustnt",
        "isnt",
        "arent",
    ]
)


ACTION_WORDS = frozenset(w for syn in SYNONYMS.values() for s in syn for w in s.split())


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def has_phrase(text_words: list[str], phrase: str) -> bool:
    p = words(phrase)
    return any(text_words[i : i + len(p)] == p for i in range(len(text_words) - len(p) + 1))


def negation(text: str) -> str | None:
    """The first negating word of ``text`` (``"not"``, ``"don't"``, ``"never"``...), or None."""
    tw = words(text)
    for before, word in zip(["", *tw], tw, strict=False):
        if word in NEGATIONS:
            return word
        if word == "t" and before.endswith("n"):  # don't, can't, won't (any apostrophe)
            return f"{before}'t"
    return None


def unknown_phrase(text: str) -> str:
    rest = [
        w
        for w in words(text)
        if w not in FILLER
        and not NUMBER.fullmatch(w)
        and not any(w in s.split() for syn in SYNONYMS.values() for s in syn)
    ]
    return " ".join(rest[:4]) or text.strip()[:40]
