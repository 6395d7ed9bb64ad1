"""Base and tuned, side by side, on held-out sets: llama.cpp with the adapter switched on or
off on one loaded model, exactly as the runtime will use it.

Decisions are scored by the ``llm`` engine (each action's log-likelihood after the chat
prompt) on ``bench decide``'s held-out sets: another seed, shifted bands, and input names
never used in training. Intents go through the whole ``resolve`` path (registry, grammar,
parse) on ``bench decide``'s utterances, whose verbs no training sample uses.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.config import Config, PolicyConfig
from agent.inference.model import Model
from agent.policy.engines import LlmEngine
from agent.policy.heldout import Utterance, held_out_sets, situations, utterances
from agent.policy.intents import Registry, resolve

INTENT_SEED = 5  # bench decide's


@dataclass
class Score:
    """Right answers per held-out set, and seconds per answer."""

    right: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    wrong_commands: int = 0  # intents only: a command where none or another was right

    @property
    def correct(self) -> int:
        return sum(self.right.values())

    @property
    def cases(self) -> int:
        return sum(self.total.values())

    @property
    def accuracy(self) -> float:
        return self.correct / self.cases if self.cases else 0.0

    def p50(self) -> float:
        return statistics.median(self.latencies) if self.latencies else 0.0

    def better_than(self, other: Score) -> bool:
        """Strictly more right answers in all, and no more wrong commands."""
        return self.correct > other.correct and self.wrong_commands <= other.wrong_commands

    def line(self) -> str:
        cells = [
            f"{name} {100 * self.right[name] / max(1, self.total[name]):.1f}% ({self.total[name]})"
            for name in self.right
        ]
        return f"{100 * self.accuracy:.1f}% [{', '.join(cells)}]"


def decision_score(
    config: Config, policy: PolicyConfig, model: Model, adapter: Path | None, n: int
) -> Score:
    """The ``llm`` engine's accuracy on ``n`` cases of each held-out set."""
    score = Score()
    with model.adapter(adapter):
        model.clear_prefix_cache()
        engine = LlmEngine(policy, model.chat, model.score)
        for name, examples in held_out_sets(config, policy, n).items():
            right = 0
            for situation, label in situations(examples):
                started = time.perf_counter()
                right += engine.decide(situation).action == label
                score.latencies.append(time.perf_counter() - started)
            score.right[name], score.total[name] = right, len(examples)
    return score


def intent_cases(config: Config) -> list[Utterance]:
    return utterances(Registry(config), random.Random(INTENT_SEED))


def intent_score(config: Config, model: Model, adapter: Path | None) -> Score:
    """Exact answers (target, action, value) on requests, right refusals on the rest."""
    registry = Registry(config)
    score = Score()
    score.right = {"exact": 0, "refused": 0}
    score.total = {"exact": 0, "refused": 0}

    def generate(system: str, user: str, grammar: str) -> str:
        prefix, suffix = model.chat(system, user)
        return model.generate(prefix, suffix, grammar=grammar, max_tokens=64)

    with model.adapter(adapter):
        model.clear_prefix_cache()
        for case in intent_cases(config):
            started = time.perf_counter()
            intent = resolve(case.text, registry, generate)
            score.latencies.append(time.perf_counter() - started)
            kind = "exact" if case.target is not None else "refused"
            score.total[kind] += 1
            if case.target is None:
                score.right[kind] += not intent.ok
                score.wrong_commands += intent.ok
                continue
            key = intent.target.actuator.key if intent.ok and intent.target else None
            if key == case.target and intent.action == case.action and same(intent.value, case):
                score.right[kind] += 1
            elif intent.ok:
                score.wrong_commands += 1
    return score


def same(value: object, case: Utterance) -> bool:
    if case.value is None:
        return True
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (float(value) == case.value)
    )
