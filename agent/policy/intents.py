"""Natural-language intents (SPEC 7) -> one proposal for the safety layer, or a clear refusal.

The text is data. It narrows, never widens, what may be asked: the device registry (every
actuator some policy lists) is matched against the words of the request, and a GBNF grammar
built from the matching entries only (their names, their actions) constrains the model's
answer. The model writes the value; code checks its type, and the safety layer its range.
Actions of actuators that need confirmation (locks, valves) must be said outright, because
small models slip polarity ("kitchen lights off" -> on). A request with a negation anywhere in
it ("do not unlock the front door", "never open the valve") is refused before anything else:
the action words are in it, and no word-spotting or small model reliably reads which one is
negated, so the only safe answer is none.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from agent.config import ActuatorConfig, Config
from agent.words import (
    ACTION_WORDS,
    FILLER,
    NUMBER,
    SYNONYMS,
    has_phrase,
    negation,
    unknown_phrase,
    words,
)

MAX_TEXT = 500


@dataclass(frozen=True, slots=True)
class Target:
    policy: str
    actuator: ActuatorConfig
    names: tuple[str, ...]  # lower case: name, aliases, device id, device id in words

    @property
    def label(self) -> str:
        return self.names[0]


@dataclass(frozen=True, slots=True)
class Intent:
    ok: bool
    target: Target | None = None
    action: str | None = None
    value: object = None  # as the model wrote it: the safety layer checks it
    error: str | None = None
    raw: str = ""


class Registry:
    """Every actuator that some policy lists, under all the names it answers to."""

    def __init__(self, config: Config) -> None:
        seen: dict[str, Target] = {}
        for policy in config.policies:
            for act in policy.actuators:
                if act.key in seen:
                    continue
                names = [
                    act.name or f"{act.device} {act.actuator}",
                    *act.aliases,
                    act.device,
                    act.device.replace("-", " ").replace("_", " "),
                    f"{act.device} {act.actuator}",
                ]
                clean = (n.lower().replace('"', "").replace("\\", "").strip() for n in names)
                unique = tuple(dict.fromkeys(n for n in clean if n))
                seen[act.key] = Target(policy.name, act, unique)
        self.targets = list(seen.values())
        self.vocabulary = {w for t in self.targets for n in t.names for w in words(n)}

    def candidates(self, text: str) -> list[Target]:
        """Targets the text names: a whole name first, else a shared meaningful word."""
        tw = words(text)
        whole = [t for t in self.targets if any(has_phrase(tw, n) for n in t.names)]
        if whole:
            best = max(len(words(n)) for t in whole for n in t.names if has_phrase(tw, n))
            return [
                t
                for t in whole
                if any(has_phrase(tw, n) and len(words(n)) == best for n in t.names)
            ]
        # a partial match only when every other meaningful word is known: "unlock the back
        # door" must not reach the front door through the word "door"
        meaningful = set(tw) - FILLER - ACTION_WORDS - {w for w in tw if NUMBER.fullmatch(w)}
        if meaningful - self.vocabulary:
            return []
        return [
            t for t in self.targets if meaningful & {w for n in t.names for w in words(n)} - FILLER
        ]


def stated_actions(text: str, actions: list[str]) -> list[str]:
    """The target's actions that the text says outright (or by a known synonym)."""
    tw = words(text)
    found = []
    for action in actions:
        if any(has_phrase(tw, s) for s in SYNONYMS.get(action, (action,))):
            found.append(action)
    # "turn off" also contains "turn"... and "on" is inside no other word, but "off" and "on"
    # both match "turn off the light on the left": prefer the one in a verb phrase.
    if len(found) > 1:
        verbs = [
            a for a in found if any(has_phrase(tw, s) for s in SYNONYMS.get(a, ()) if " " in s)
        ]
        found = verbs or found
    return found


def _quote(s: str) -> str:
    """A GBNF literal matching the JSON string of ``s`` (names carry no quotes: see below)."""
    return '"\\"' + s + '\\""'


def grammar(targets: list[Target], actions: dict[str, list[str]], numbers: bool = True) -> str:
    """GBNF: one alternative per target, with only that target's (stated) actions."""
    rules = []
    for i, t in enumerate(targets):
        takes = t.actuator.takes_value if numbers else []
        groups = [([a for a in actions[t.actuator.key] if a in takes], "value"),
                  ([a for a in actions[t.actuator.key] if a not in takes], '"null"')]
        head = f'"{{\\"target\\": " {_quote(t.label)} ", \\"action\\": "'
        alternatives = [
            f'{head} ( {" | ".join(_quote(a) for a in acts)} ) ", \\"value\\": " {value} "}}"'
            for acts, value in groups if acts  # a value only with an action that takes one
        ]
        rules.append(f"target{i} ::= " + " | ".join(alternatives))
    root = "root ::= " + " | ".join(f"target{i}" for i in range(len(targets)))
    number = 'value ::= "null" | "-"? [0-9] [0-9]? [0-9]? [0-9]? ("." [0-9] [0-9]?)?'
    return "\n".join([root, *rules, number])


def system_prompt(targets: list[Target]) -> str:
    lines = ["You turn a person's request into one command for a home device.", "Devices:"]
    for t in targets:
        act = t.actuator
        also = f" (also: {', '.join(t.names[1:3])})" if len(t.names) > 1 else ""
        rng = (f"; value {act.value.min:g} to {act.value.max:g} for {', '.join(act.takes_value)}"
               if act.value else "")
        lines.append(f"- {t.label}{also}: {', '.join(act.actions)}{rng}")
    lines.append(
        "Reply with JSON: target, action, and value (a number only if the person "
        "gives one, else null)."
    )
    return "\n".join(lines)


Generate = Callable[[str, str, str], str]  # (system, user, grammar) -> model text


def resolve(text: str, registry: Registry, generate: Generate) -> Intent:
    """Text -> Intent. ``generate`` runs the model under the grammar."""
    text = text.strip()
    if not text:
        return Intent(False, error="empty request")
    if len(text) > MAX_TEXT:
        return Intent(False, error=f"request longer than {MAX_TEXT} characters")
    negated = negation(text)
    if negated is not None:
        return Intent(
            False,
            error=f"not done: the request says {negated!r}, and a request with a negation is "
            "never acted on; say only what should happen",
        )
    targets = registry.candidates(text)
    if not targets:
        return Intent(False, error=f"unknown device {unknown_phrase(text)!r}")
    actions: dict[str, list[str]] = {}
    asked = stated_actions(text, list(SYNONYMS))
    for t in targets:
        stated = stated_actions(text, list(t.actuator.actions))
        if asked and not stated:
            if len(targets) == 1:
                return Intent(
                    False,
                    target=t,
                    error=f"{t.label} cannot {asked[0]}: it can {', '.join(t.actuator.actions)}",
                )
            continue
        if t.actuator.needs_confirmation and len(stated) != 1:
            if len(targets) == 1:
                return Intent(
                    False,
                    target=t,
                    error=f"please confirm: say which of "
                    f"{', '.join(t.actuator.actions)} you want for {t.label}",
                )
            continue
        actions[t.actuator.key] = stated or list(t.actuator.actions)
    targets = [t for t in targets if t.actuator.key in actions]
    if not targets:
        return Intent(False, error="please confirm: name the device and the action outright")
    # chat-template markers in the text would become control tokens: the text is only data
    safe = text.replace("<|", "< |").replace("|>", "| >")
    numbers = bool(NUMBER.search(text))  # no number said: the model may not invent one
    raw = generate(system_prompt(targets), safe, grammar(targets, actions, numbers))
    return parse_answer(raw, targets)


def parse_answer(raw: str, targets: list[Target]) -> Intent:
    try:
        data = json.loads(raw)
        label, action, value = data["target"], data["action"], data["value"]
    except (ValueError, KeyError, TypeError):
        return Intent(False, error="could not understand the request", raw=raw)
    target = next((t for t in targets if t.label == label), None)
    if target is None or action not in target.actuator.actions:
        return Intent(False, error="could not understand the request", raw=raw)
    return Intent(True, target, action, value, raw=raw)
