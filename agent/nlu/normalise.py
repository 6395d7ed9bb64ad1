"""Normalise a request: unicode, case, apostrophes, punctuation, numbers, units, changes."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from agent.nlu.numbers_zh import digits as zh_digits

_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "´": "'", "`": "'", "＇": "'"})
_CONTRACTIONS = {
    "it's": "it is", "that's": "that is", "don't": "do not", "doesn't": "does not",
    "didn't": "did not", "won't": "will not", "can't": "cannot", "shouldn't": "should not",
    "isn't": "is not", "let's": "let us", "i'm": "i am", "it'd": "it would",
}
_CONTRACTION = re.compile(r"\b(" + "|".join(re.escape(c) for c in _CONTRACTIONS) + r")\b")
_SMALL = {
    "en": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"],
    "de": ["null", "ein", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun",
           "zehn"],
}
_UNIT_WORDS = r"(?:degrees?|grad|percent|prozent|%)"
_DEGREES = {"en": " degrees", "de": " Grad", "zh": "度"}
_DEGREE_SIGN = re.compile(r"(\d)\s*(?:°\s*c\b|º\s*c\b|°|º|\s+degrees?\s+(?:celsius|c)\b|"
                          r"\s+grad\s+celsius\b|\s*℃|\s+celsius\b|(?<=\d)c\b)", re.IGNORECASE)
_PERCENT = re.compile(r"(\d)\s*(?:per\s?cent|pct)\b", re.IGNORECASE)
_DECIMAL_COMMA = re.compile(r"(\d),(\d)")
_PUNCT = re.compile(r"(?<!\d)\.|\.(?!\d)|[!?¡¿,;:\"()\[\]{}…。！？，、；：“”「」]+")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_RELATIVE = re.compile(
    r"(\d+(?:\.\d+)?)\s*(?:degrees?|grad|度)\s*(warmer|hotter|cooler|colder|wärmer|kälter|kühler)"
    r"|(?:高|升高|调高|低|降低|调低)\s*(\d+(?:\.\d+)?)\s*度",
    re.IGNORECASE,
)
_UP = ("warmer", "hotter", "wärmer", "高", "升高", "调高")


@dataclass(frozen=True, slots=True)
class Normalised:
    text: str  # for the templates
    numbers: tuple[float, ...]  # every number the request says
    delta: float | None = None  # "two degrees warmer" -> +2


def base(lang: str) -> str:
    return lang.split("-")[0].lower()


def normalise(text: str, lang: str) -> Normalised:
    lang = base(lang)
    t = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).strip().lower()
    t = _CONTRACTION.sub(lambda m: _CONTRACTIONS[m.group(1)], t)
    t = _DECIMAL_COMMA.sub(r"\1.\2", t)
    t = _words_to_digits(t, lang)
    t = _DEGREE_SIGN.sub(lambda m: m.group(1) + _DEGREES.get(lang, " degrees"), t)
    t = _PERCENT.sub(r"\1%", t)
    t = _PUNCT.sub(" ", t)
    t = re.sub(r"\s+", " ", t).strip()
    numbers = tuple(float(n) for n in _NUMBER.findall(t))
    return Normalised(t, numbers, _delta(t))


def _words_to_digits(t: str, lang: str) -> str:
    if lang == "zh":
        return zh_digits(t)
    if lang in ("en", "de"):
        from text_to_num import alpha2digit  # type: ignore[import-untyped]

        t = alpha2digit(t, lang)
        small = _SMALL[lang]
        pattern = re.compile(rf"\b({'|'.join(small)})\s+(?={_UNIT_WORDS})")
        t = pattern.sub(lambda m: f"{small.index(m.group(1))} ", t)
    return t


def _delta(t: str) -> float | None:
    m = _RELATIVE.search(t)
    if m is None:
        return None
    if m.group(1):
        size, word = float(m.group(1)), m.group(2).lower()
    else:
        size, word = float(m.group(3)), m.group(0)
    return size if any(word.startswith(u) for u in _UP) else -size
