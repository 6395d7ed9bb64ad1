"""``edge-agent bench tune``: what fine-tuning buys, measured in one run.

One policy's ``llm`` engine and the intents are each tuned exactly as ``edge-agent tune``
does, in a scratch data directory (nothing of a real agent is touched), and measured
before and after on held-out sets: accuracy, decision latency (p50 of the same decisions),
adapter size, tuning time and peak memory; then the tuned engine runs the agent's fitness
gate on its own. Targets (issue 7): >= 95% decisions, >= 90% exact intents, no slower.
"""

from __future__ import annotations

import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from agent.config import Config
from agent.inference.model import Model
from agent.inference.quantize import quantize
from agent.inference.threads import pick_threads
from agent.policy import examples as gen
from agent.policy.engines import LlmEngine, accuracy
from agent.service.learning import GATE_CASES, situation_of
from agent.tune.evaluate import decision_score
from agent.tune.export import write_merged
from agent.tune.run import Options, Outcome, find_policy, tune

Echo = Callable[[str], None]
DECISION_TARGET = 0.95
INTENT_TARGET = 0.90
LATENCY_SLACK = 1.10  # "no slower", within the noise of a shared machine


def run_bench(
    config: Config, *, policy: str, steps: int, cases: int, intents: bool, echo: Echo
) -> bool:
    find_policy(config, policy)
    with tempfile.TemporaryDirectory(prefix="edge-agent-bench-tune-") as tmp:
        scratch = config.model_copy(
            update={"agent": config.agent.model_copy(update={"data_dir": Path(tmp)})}
        )
        echo(f"bench tune: {steps} steps each, {cases} held-out decisions per set")
        decided = tune(scratch, policy, Options(steps=steps, cases=cases), _indent(echo))
        ok = report_decisions(scratch, policy, decided, echo)
        if decided.installed:
            compare_merged(scratch, policy, decided, cases, Path(tmp), echo)
        if intents:
            intended = tune(scratch, None, Options(steps=steps), _indent(echo))
            ok = report_intents(intended, echo) and ok
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        echo(f"peak memory of the whole bench process: {peak / 2**30:.2f} GB")
    return ok


def _indent(echo: Echo) -> Echo:
    return lambda line: echo(f"  {line}")


def report_decisions(config: Config, policy: str, o: Outcome, echo: Echo) -> bool:
    after = o.after
    assert after is not None
    before_ms, after_ms = 1000 * o.before.p50(), 1000 * after.p50()
    echo(
        f"decisions ({policy}, llm engine): {o.before.line()} -> {after.line()}; "
        f"ratio {_ratio(after.accuracy, o.before.accuracy)} (target >= "
        f"{100 * DECISION_TARGET:.0f}%: {_met(after.accuracy >= DECISION_TARGET)})"
    )
    echo(
        f"decision latency p50: {before_ms:.0f} ms -> {after_ms:.0f} ms; ratio "
        f"{after_ms / before_ms:.2f} (target <= {LATENCY_SLACK:.2f}: "
        f"{_met(after_ms <= LATENCY_SLACK * before_ms)})"
    )
    _sizes(o, echo)
    gate = gate_score(config, policy, o)
    min_accuracy = find_policy(config, policy).min_accuracy
    echo(
        f"fitness gate of the tuned llm engine: {100 * gate:.0f}% on {GATE_CASES} cases "
        f"(min_accuracy {100 * min_accuracy:.0f}%: "
        f"{'passes' if gate >= min_accuracy else 'FALLS BACK TO RULES'})"
    )
    return (
        o.installed
        and after.accuracy >= DECISION_TARGET
        and after_ms <= LATENCY_SLACK * before_ms
        and gate >= min_accuracy
    )


def report_intents(o: Outcome, echo: Echo) -> bool:
    after = o.after
    assert after is not None
    exact_before = o.before.right["exact"] / max(1, o.before.total["exact"])
    exact_after = after.right["exact"] / max(1, after.total["exact"])
    echo(
        f"intents: exact {100 * exact_before:.1f}% -> {100 * exact_after:.1f}% on "
        f"{after.total['exact']} requests, ratio {_ratio(exact_after, exact_before)}; "
        f"refused {o.before.right['refused']} -> {after.right['refused']} of "
        f"{after.total['refused']} impossible; wrong commands {o.before.wrong_commands} -> "
        f"{after.wrong_commands}; p50 {1000 * o.before.p50():.0f} ms -> "
        f"{1000 * after.p50():.0f} ms (target >= {100 * INTENT_TARGET:.0f}% exact: "
        f"{_met(exact_after >= INTENT_TARGET)})"
    )
    _sizes(o, echo)
    echo(f"  {o.reason}")
    return exact_after >= INTENT_TARGET


def _sizes(o: Outcome, echo: Echo) -> None:
    per_step = o.train_seconds / max(1, o.steps)
    echo(
        f"  adapter {o.size / 2**20:.1f} MB (base model {o.base.path.stat().st_size / 2**20:.0f} "
        f"MB, ratio {o.size / o.base.path.stat().st_size:.3f}); tuning {o.train_seconds:.0f}s "
        f"for {o.steps} steps ({per_step:.1f} s/step); training peak {o.peak_rss / 2**30:.2f} GB"
    )


def compare_merged(
    config: Config, policy_name: str, o: Outcome, cases: int, tmp: Path, echo: Echo
) -> None:
    """The other way to ship a fine-tune: merged into the weights and quantised to Q8_0."""
    assert o.adapter is not None and o.after is not None
    started = time.monotonic()
    merged, q8 = tmp / "merged-f32.gguf", tmp / "merged-q8_0.gguf"
    write_merged(o.base.path, o.adapter, merged)
    quantize(merged, q8, "q8_0", threads=pick_threads(None))
    merged.unlink()
    seconds = time.monotonic() - started
    policy = find_policy(config, policy_name)
    with Model(q8, threads=pick_threads(None), context=config.model.context, sha256="merged") as m:
        score = decision_score(config, policy, m, None, cases)
    size = q8.stat().st_size
    echo(
        f"  merged + Q8_0 instead: {score.line()}, p50 {1000 * score.p50():.0f} ms, "
        f"{size / 2**20:.0f} MB (adapter {o.size / 2**20:.1f} MB), made in {seconds:.0f}s"
    )
    if score.correct > o.after.correct:
        verdict = "the merged file scored higher: ship it as a model update (model push)"
    else:
        verdict = "the adapter: as accurate, and the agent keeps one base model for all"
    echo(f"  picked: {verdict}")
    q8.unlink()


def gate_score(config: Config, policy_name: str, o: Outcome) -> float:
    """The agent's own fitness gate (same seed and count) on the installed adapter."""
    if not o.installed or o.adapter is None:
        return 0.0
    policy = find_policy(config, policy_name)
    cases = [
        (situation_of(e), e.action) for e in gen.generate(config, policy, GATE_CASES, seed=7919)
    ]
    with Model(
        o.base.path,
        threads=pick_threads(None),
        context=config.model.context,
        sha256=o.base.sha256,
        lora_path=o.adapter,
    ) as m:
        return accuracy(LlmEngine(policy, m.chat, m.score), cases)


def _ratio(after: float, before: float) -> str:
    return f"{after / before:.2f}x" if before > 0 else "n/a"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT MET"
