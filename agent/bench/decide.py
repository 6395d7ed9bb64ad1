"""``edge-agent bench decide``: accuracy of each engine, intents, latency, and the safety layer.

1. Accuracy of every engine on labelled situations generated from each policy with targets
   (held-out seeds; also with bands and input names the embed head never saw), and of the
   intents on labelled utterances built from the device registry.
2. Decision latency p50/p95, cold (prefix cache emptied) and warm, against a raw
   llama-cpp-python call on the same prompt and settings: the agent's overhead.
3. 10,000 random model outputs through the safety layer: commands outside the allow-list or
   range that would be published must be 0.

Every figure is printed; a low one is never hidden.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from agent.config import Config, PolicyConfig
from agent.errors import AgentError
from agent.inference.locate import locate
from agent.inference.model import Model
from agent.inference.threads import pick_threads
from agent.policy import examples as gen
from agent.policy.engines import EmbedEngine, Engine, LlmEngine, RulesEngine, accuracy
from agent.policy.head import SoftmaxHead
from agent.policy.heldout import held_out_sets, situations, utterances
from agent.policy.intents import Registry, Target, resolve
from agent.policy.safety import Proposal, SafetyLayer

Echo = Callable[[str], None]


def train_embed(config: Config, policy: PolicyConfig, model: Model) -> tuple[EmbedEngine, float]:
    started = time.perf_counter()
    train = gen.generate(config, policy, 240, seed=1)
    x = np.array([model.embed(e.digest) for e in train])
    head = SoftmaxHead.fit(x, [e.action for e in train], list(policy.actuators[0].actions))
    return EmbedEngine(head, model.embed), time.perf_counter() - started


def engine_accuracy(
    config: Config, model: Model, n: int, echo: Echo, only: list[str] | None = None
) -> None:
    for policy in config.policies:
        if not policy.targets or (only is not None and policy.name not in only):
            continue
        sets = held_out_sets(config, policy, n)
        embed, seconds = train_embed(config, policy, model)
        echo(
            f"policy {policy.name}: embed head trained on 240 generated examples in {seconds:.1f}s"
        )
        engines: list[Engine] = [
            RulesEngine(policy),
            embed,
            LlmEngine(policy, model.chat, model.score),
        ]
        for engine in engines:
            cells = []
            for name, examples in sets.items():
                cases = situations(examples if engine.name != "llm" else examples[:60])
                cells.append(f"{name} {100 * accuracy(engine, cases):5.1f}% ({len(cases)})")
            gate = accuracy(
                engine,
                situations(
                    gen.generate(config, policy, 60, seed=7919)[:60]
                    if engine.name != "rules"
                    else []
                ),
            )
            verdict = (
                ""
                if engine.name == "rules"
                else f"; fitness gate {100 * gate:.0f}% -> "
                f"{'passes' if gate >= policy.min_accuracy else 'FALLS BACK TO RULES'}"
            )
            echo(f"  {engine.name:5} accuracy: {', '.join(cells)}{verdict}")


def intent_accuracy(config: Config, model: Model, echo: Echo) -> None:
    registry = Registry(config)
    cases = utterances(registry, random.Random(5))

    def generate(system: str, user: str, grammar: str) -> str:
        prefix, suffix = model.chat(system, user)
        return model.generate(prefix, suffix, grammar=grammar, max_tokens=64)

    exact = refused_right = wrong_command = 0
    positives = [c for c in cases if c.target is not None]
    latencies = []
    for case in cases:
        started = time.perf_counter()
        intent = resolve(case.text, registry, generate)
        latencies.append(time.perf_counter() - started)
        key = intent.target.actuator.key if intent.ok and intent.target else None
        if case.target is None:
            refused_right += not intent.ok
            wrong_command += intent.ok
            continue
        value_ok = (
            case.value is None
            or intent.value == case.value
            or (isinstance(intent.value, (int, float)) and float(intent.value) == case.value)
        )
        if key == case.target and intent.action == case.action and value_ok:
            exact += 1
        elif intent.ok:
            wrong_command += 1
    echo(
        f"intents: {100 * exact / len(positives):.1f}% exact on {len(positives)} requests; "
        f"{refused_right} of {len(cases) - len(positives)} impossible requests refused; "
        f"{wrong_command} wrong commands proposed (before the safety layer); "
        f"p50 {1000 * statistics.median(latencies):.0f} ms"
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency(config: Config, model: Model, runs: int, echo: Echo) -> None:
    policy = next(p for p in config.policies if p.targets)
    engine = LlmEngine(policy, model.chat, model.score)
    cases = situations(gen.generate(config, policy, runs, seed=404))

    def timed(fn: Callable[[], Any]) -> float:
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started

    cold, warm, raw_warm, raw = [], [], [], []
    grammar = 'root ::= "cool" | "heat" | "off"'
    for situation, _ in cases:
        p, s = model.chat(engine.system, situation.digest)
        model.clear_prefix_cache()
        cold.append(timed(lambda s=situation: engine.decide(s)))  # type: ignore[misc]
        warm.append(timed(lambda s=situation: engine.decide(s)))  # type: ignore[misc]
        raw.append(
            timed(
                lambda p=p, s=s: model.raw_generate(
                    p + s,
                    grammar=grammar,  # type: ignore[misc]
                    max_tokens=2,
                )
            )
        )
        raw_warm.append(
            timed(
                lambda p=p, s=s: model.generate(
                    p,
                    s,
                    grammar=grammar,  # type: ignore[misc]
                    max_tokens=2,
                )
            )
        )
    echo(f"latency of an llm decision over {runs} situations (3 actions scored):")
    for name, xs in (
        ("agent, cold (no prefix cache)", cold),
        ("agent, prefix cache", warm),
        ("raw llama-cpp-python create_completion, same prompt", raw),
        ("agent generate, same prompt, prefix cache", raw_warm),
    ):
        echo(
            f"  {name:55} p50 {1000 * statistics.median(xs):6.0f} ms, "
            f"p95 {1000 * percentile(xs, 0.95):6.0f} ms"
        )
    overhead = statistics.median(raw_warm) / statistics.median(raw)
    echo(
        f"  agent/raw ratio on the same generation: {overhead:.2f} (target <= 1.10); "
        f"cached/cold decision: {statistics.median(warm) / statistics.median(cold):.2f}"
    )
    echo(f"  model: {model.tokens_per_second():.0f} tokens/s")


def random_output(rng: random.Random, names: list[str]) -> object:
    choice = rng.randrange(8)
    return [
        rng.uniform(-1e6, 1e6),
        rng.choice([math.nan, math.inf, -math.inf]),
        rng.randrange(-(10**20), 10**20),
        rng.choice(names) if names else "x",
        None,
        rng.choice([True, False]),
        str(rng.uniform(0, 50)),
        rng.uniform(0, 40),
    ][choice]


def safety_fuzz(config: Config, n: int, echo: Echo) -> None:
    rng = random.Random(11)
    layer = SafetyLayer(config)
    registry = Registry(config)
    targets: list[Target] = registry.targets
    words = sorted({a for t in targets for a in t.actuator.actions} | {"unlock", "explode", ""})
    devices = sorted({t.actuator.device for t in targets} | {"garage", "front-door2"})
    allowed = escaped = 0
    now = 1_800_000_000.0
    for i in range(n):
        t = rng.choice(targets)
        proposal = Proposal(
            rng.choice([t.policy, t.policy, "other"]),
            rng.choice([t.actuator.device, t.actuator.device, rng.choice(devices)]),
            rng.choice([t.actuator.actuator, t.actuator.actuator, "lock", "hvac"]),
            rng.choice([rng.choice(list(t.actuator.actions)), rng.choice(words)]),
            random_output(rng, words),
            source="intent",
        )
        verdict = layer.check(proposal, now + 3600 * i, lambda d, q: None)
        if not verdict.allowed:
            continue
        allowed += 1
        escaped += not legal(config, proposal, verdict.value)
    echo(
        f"safety layer: {n} random model outputs, {allowed} allowed, {escaped} outside the "
        f"allow-list or range (must be 0)"
    )


def legal(config: Config, p: Proposal, value: float | None) -> bool:
    """An independent oracle: is this command within some policy's allow-list and range?"""
    for policy in config.policies:
        for a in policy.actuators:
            if (policy.name, a.device, a.actuator) != (p.policy, p.device, p.actuator):
                continue
            if p.action not in a.actions:
                return False
            if value is None:
                return True
            return a.value is not None and a.value.min <= value <= a.value.max
    return False


def run_bench(
    config: Config, *, situations_n: int, runs: int, echo: Echo, only: list[str] | None = None
) -> None:
    unknown = sorted(set(only or []) - {p.name for p in config.policies if p.targets})
    if unknown:
        raise AgentError(f"no policy with targets named {', '.join(unknown)}")
    model_file = locate(config.model.path)
    threads = pick_threads(None)
    echo(
        f"bench decide: model {model_file.name} ({model_file.sha256[:12]}), {threads} "
        f"thread(s), {situations_n} situations per set"
    )
    with Model(
        model_file.path, threads=threads, context=config.model.context, sha256=model_file.sha256
    ) as model:
        engine_accuracy(config, model, situations_n, echo, only)
        intent_accuracy(config, model, echo)
        latency(config, model, runs, echo)
    safety_fuzz(config, 10_000, echo)
