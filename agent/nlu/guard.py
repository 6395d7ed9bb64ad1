"""Refuse before matching: negated requests and instructions aimed at the agent, in any language."""

from __future__ import annotations

import re

# a negated request must never yield the negated action: it is refused, whatever follows
NEGATIONS = {
    "en": ("do not", "does not", "did not", "not", "never", "no", "dont", "don t", "nothing",
           "stop not", "cannot", "neither", "nor", "without"),
    "de": ("nicht", "nie", "niemals", "kein", "keine", "keinen", "keinesfalls", "bloß nicht"),
    "zh": ("不要", "别", "不用", "勿", "不许", "禁止", "甭", "不准", "不能", "不必", "不"),
    "fr": ("ne", "pas", "jamais"),
    "es": ("no", "nunca"),
    "nl": ("niet", "nooit", "geen"),
}
# words that address the agent's instructions rather than a device
INJECTIONS = {
    "en": ("ignore", "instruction", "instructions", "system prompt", "prompt", "pretend",
           "disregard", "override", "jailbreak", "you are now", "developer mode"),
    "de": ("ignoriere", "ignorier", "anweisung", "anweisungen", "vergiss", "systemprompt"),
    "zh": ("忽略", "指令", "提示词", "无视", "忘记之前"),
}
NEGATION_REASONS = {
    "en": "the request says not to ({word!r}), so nothing was sent; say what should happen instead",
    "de": "Die Anfrage verneint ({word!r}), daher wurde nichts gesendet; sagen Sie, was "
          "geschehen soll",
    "zh": "请求中含有否定（{word}），因此没有发送任何命令；请直接说要做什么",
}
INJECTION_REASON = "the request gives the agent instructions ({word!r}) instead of asking for " \
                   "something a device does, so nothing was sent"


def _found(text: str, phrases: tuple[str, ...]) -> str | None:
    for phrase in phrases:
        if phrase.isascii() or " " in phrase or any(c.isalpha() and c.isascii() for c in phrase):
            if re.search(rf"(?<![\w]){re.escape(phrase)}(?![\w])", text):
                return phrase
        elif phrase in text:
            return phrase
    return None


def negation(text: str, languages: list[str]) -> tuple[str, str] | None:
    """(word, language) of a negation in ``text`` (normalised), checked in every language."""
    for lang in dict.fromkeys([*languages, "en"]):
        word = _found(text, NEGATIONS.get(lang.split("-")[0], ()))
        if word is not None:
            return word, lang
    return None


def injection(text: str, languages: list[str]) -> str | None:
    for lang in dict.fromkeys([*languages, "en"]):
        word = _found(text, INJECTIONS.get(lang.split("-")[0], ()))
        if word is not None:
            return word
    return None


def refusal_reason(text: str, languages: list[str]) -> tuple[str, str] | None:
    """(reason, language) when the request must be refused before any matching."""
    neg = negation(text, languages)
    if neg is not None:
        word, lang = neg
        template = NEGATION_REASONS.get(lang.split("-")[0], NEGATION_REASONS["en"])
        return template.format(word=word), lang
    injected = injection(text, languages)
    if injected is not None:
        return INJECTION_REASON.format(word=injected), "en"
    return None
