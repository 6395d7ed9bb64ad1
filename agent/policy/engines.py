"""Decision engines: each turns a situation into probabilities over the policy's actions.

- ``rules``: a band controller with hysteresis, with soft scores so peers can average them;
- ``embed``: the model's embedding of the digest, then the policy's softmax head;
- ``llm``: the model scores each allowed action as the continuation of a chat prompt.

The model's word is never trusted unchecked: engines only propose; the safety layer decides.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from agent.config import PolicyConfig
from agent.policy.digest import Zone, fixed_part
from agent.policy.head import SoftmaxHead

Vector = npt.NDArray[np.floating]


@dataclass(frozen=True, slots=True)
class Situation:
    digest: str
    value: float  # the primary target input's latest cleaned value
    band: tuple[float, float]
    zone: Zone


@dataclass(frozen=True, slots=True)
class Answer:
    scores: dict[str, float]  # over the primary actuator's actions; they sum to 1
    raw: str  # what the model (or the rules) produced, for the audit
    prompt_hash: str | None = None

    @property
    def action(self) -> str:
        return max(self.scores, key=lambda a: (self.scores[a], -list(self.scores).index(a)))


class Embed(Protocol):
    """A text's embedding; ``fixed`` is a leading part of it that recurs (worth keeping)."""

    def __call__(self, text: str, fixed: str = "") -> Vector: ...


class Engine(Protocol):
    name: str

    def decide(self, situation: Situation) -> Answer: ...


def normalise(scores: dict[str, float]) -> dict[str, float]:
    total = math.fsum(scores.values())
    if total <= 0 or not math.isfinite(total):
        return {a: 1.0 / len(scores) for a in scores}
    return {a: v / total for a, v in scores.items()}


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


class RulesEngine:
    """Act above / below the band, stop inside; keep acting until ``hysteresis`` of the band
    width past the edge, so the actuator does not chatter at the edge."""

    name = "rules"

    def __init__(self, policy: PolicyConfig, hysteresis: float = 0.25) -> None:
        actuator = policy.actuators[0]
        respond = actuator.responses
        assert respond is not None  # the config requires it for policies with targets
        self.actions = list(actuator.actions)
        self.respond = respond
        self.hysteresis = hysteresis
        self.previous: str | None = None

    def reset(self) -> None:
        self.previous = None

    def decide(self, situation: Situation) -> Answer:
        lo, hi = situation.band
        width = hi - lo
        keep = self.hysteresis * width
        hi_edge = hi - keep if self.previous and self.previous == self.respond.above else hi
        lo_edge = lo + keep if self.previous and self.previous == self.respond.below else lo
        softness = max(0.05 * width, 0.05)
        p_above = _sigmoid((situation.value - hi_edge) / softness)
        p_below = _sigmoid((lo_edge - situation.value) / softness)
        scores = dict.fromkeys(self.actions, 0.0)
        scores[self.respond.above or self.respond.inside] += p_above
        scores[self.respond.below or self.respond.inside] += p_below
        scores[self.respond.inside] += max(0.0, 1.0 - p_above - p_below)
        # the soft scores are for averaging with peers; the decision itself is exact: half the
        # mass on the action the band says, so it always has the highest score
        zone = (
            "above"
            if situation.value > hi_edge
            else "below"
            if situation.value < lo_edge
            else "inside"
        )
        decided = getattr(self.respond, zone) or self.respond.inside
        soft = normalise(scores)
        final = {a: 0.5 * v + (0.5 if a == decided else 0.0) for a, v in soft.items()}
        answer = Answer(final, json.dumps({"above": round(p_above, 4), "below": round(p_below, 4)}))
        self.previous = answer.action
        return answer


class EmbedEngine:
    """The digest's embedding through the policy's softmax head."""

    name = "embed"

    def __init__(self, head: SoftmaxHead, embed: Embed) -> None:
        self.head = head
        self.embed = embed

    def decide(self, situation: Situation) -> Answer:
        digest = situation.digest
        vector = np.asarray(self.embed(digest, fixed_part(digest)), dtype=np.float64)
        probs = self.head.proba(vector[None, :])[0]
        scores = {c: float(p) for c, p in zip(self.head.classes, probs, strict=True)}
        return Answer(normalise(scores), json.dumps({c: round(v, 6) for c, v in scores.items()}))


def llm_system_prompt(policy: PolicyConfig) -> str:
    actuator = policy.actuators[0]
    name = actuator.name or f"{actuator.device} {actuator.actuator}"
    goal = policy.goal or "Keep every input inside its target range."
    return (
        f"You control the {name}. {goal} Read the situation and answer with one word: "
        f"{', '.join(actuator.actions)}."
    )


class LlmEngine:
    """The model scores each allowed action word after a chat prompt (log-likelihood)."""

    name = "llm"

    def __init__(
        self,
        policy: PolicyConfig,
        chat: Callable[[str, str], tuple[str, str]],
        score: Callable[[str, str, Sequence[str]], list[float]],
    ) -> None:
        self.actions = list(policy.actuators[0].actions)
        self.system = llm_system_prompt(policy)
        self.chat = chat
        self.score = score

    def decide(self, situation: Situation) -> Answer:
        prefix, suffix = self.chat(self.system, situation.digest)
        logliks = self.score(prefix, suffix, self.actions)
        top = max(logliks)
        scores = {a: math.exp(ll - top) for a, ll in zip(self.actions, logliks, strict=True)}
        digest = hashlib.sha256((prefix + suffix).encode()).hexdigest()[:16]
        raw = json.dumps({a: round(ll, 4) for a, ll in zip(self.actions, logliks, strict=True)})
        return Answer(normalise(scores), raw, digest)


def accuracy(engine: Engine, cases: Sequence[tuple[Situation, str]]) -> float:
    """Share of cases where the engine's best action is the labelled one."""
    if not cases:
        return 0.0
    right = 0
    for situation, label in cases:
        reset = getattr(engine, "reset", None)
        if reset is not None:  # each case on its own: no hysteresis carried between cases
            reset()
        right += engine.decide(situation).action == label
    return right / len(cases)
