"""One tuning run: samples -> current model's score -> LoRA training -> adapter GGUF ->
tuned score -> install only if strictly better. See the package docstring.

The run works in a private directory under ``data_dir/tuned/<target>/`` that is removed
at the end, however it ends; the installed adapter changes only in the last step, by the
atomic pointer swap, so Ctrl-C or SIGTERM at any point leaves the one in use untouched.
"""

from __future__ import annotations

import gc
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import Config, PolicyConfig
from agent.errors import AgentError
from agent.inference.adapters import INTENTS, install_adapter, installed, policy_target, tune_dir
from agent.inference.locate import ModelFile, locate
from agent.inference.model import Model
from agent.inference.store import current_model
from agent.inference.threads import pick_threads
from agent.tune import data
from agent.tune.evaluate import Score, decision_score, intent_score

if TYPE_CHECKING:
    from agent.tune.fedlora import FedTune

log = logging.getLogger(__name__)

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Options:
    steps: int = 60
    max_minutes: float | None = None
    samples: int = 480
    cases: int = 60  # decisions: per held-out set; intents use bench decide's whole set
    batch: int = 8
    lr: float = 1e-3
    rank: int = 16
    seed: int = 0
    threads: int | None = None
    max_memory_gb: float = 6.0
    install: bool = True
    out: Path | None = None  # also keep the adapter (and its record) here
    federate: FedTune | None = None  # train with the group's devices (agent.tune.fedlora)
    adapter_file: Path | None = None  # no training: measure (and install) this adapter


@dataclass
class Outcome:
    target: str
    base: ModelFile
    samples: int
    before: Score
    before_name: str  # "base model" or the adapter file in use before
    after: Score | None = None
    adapter: Path | None = None  # installed or kept (--out) copy, if any
    sha256: str | None = None
    size: int = 0
    steps: int = 0
    train_seconds: float = 0.0
    peak_rss: int = 0
    installed: bool = False
    reason: str = ""
    record: dict[str, Any] = field(default_factory=dict)


def base_model(config: Config) -> ModelFile:
    """The model the agent runs: the installed update, else the configured file."""
    return current_model(config.agent.data_dir) or locate(config.model.path, config.agent.data_dir)


def find_policy(config: Config, name: str) -> PolicyConfig:
    for policy in config.policies:
        if policy.name == name:
            if not policy.targets:
                raise AgentError(
                    f"policy {name} has no targets: nothing to decide, nothing to tune"
                )
            return policy
    known = ", ".join(p.name for p in config.policies if p.targets) or "none"
    raise AgentError(f"no policy named {name!r} (policies with targets: {known})")


def samples_for(
    config: Config, policy: PolicyConfig | None, n: int, echo: Echo
) -> list[data.Sample]:
    if policy is None:
        samples, refused = data.intent_samples(config, n)
        echo(
            f"{len(samples)} intent samples from {len(config.policies)} policies' actuators "
            f"({refused} generated requests refused by the registry before the model)"
        )
        return samples
    labelled = audit_labels(config, policy)
    samples = data.decision_samples(config, policy, n, labelled=labelled)
    echo(
        f"{len(samples)} decision samples for {policy.name}: {n} generated situations and "
        f"{len(labelled)} labels from the audit history"
    )
    return samples


def audit_labels(config: Config, policy: PolicyConfig) -> list[tuple[str, str]]:
    """(digest, action) pairs people gave by overriding the actuator, if a database exists."""
    if not config.db_path.exists():
        return []
    from agent.storage import Store

    store = Store(config.db_path, config.storage.synchronous)
    try:
        return [(d, a) for d, a in store.examples(policy.name) if a in policy.actuators[0].actions]
    finally:
        store.close()


def score(
    config: Config, policy: PolicyConfig | None, model: Model, adapter: Path | None, n: int
) -> Score:
    if policy is None:
        return intent_score(config, model, adapter)
    return decision_score(config, policy, model, adapter, n)


def tune(config: Config, policy_name: str | None, options: Options, echo: Echo) -> Outcome:
    """Tune for ``policy_name`` (None: intents); see the module docstring."""
    policy = None if policy_name is None else find_policy(config, policy_name)
    target = INTENTS if policy is None else policy_target(policy.name)
    config.agent.data_dir.mkdir(parents=True, exist_ok=True)
    base = base_model(config)
    threads = pick_threads(options.threads)
    samples = samples_for(config, policy, options.samples, echo)
    current = _current_adapter(config, target, base)
    echo(
        f"base model {base.name} ({base.sha256[:12]}), {threads} thread(s); "
        f"in use now: {current.name if current else 'the base model'}"
    )
    with Model(base.path, threads=threads, context=config.model.context, sha256=base.sha256) as m:
        prompts = [_prompt(m, s) for s in samples]
        started = time.monotonic()
        before = score(config, policy, m, current, options.cases)
        echo(f"before: {before.line()} in {time.monotonic() - started:.0f}s")
    outcome = Outcome(target, base, len(samples), before, current.name if current else "base model")
    work = tune_dir(config.agent.data_dir, target)
    work.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".run-", dir=work))
    try:
        if options.adapter_file is None:
            adapter = _train(base, samples, prompts, options, threads, outcome, scratch, echo)
        else:
            adapter = _shipped(options.adapter_file, scratch, outcome, echo)
        with Model(
            base.path, threads=threads, context=config.model.context, sha256=base.sha256
        ) as m:
            started = time.monotonic()
            outcome.after = score(config, policy, m, adapter, options.cases)
            echo(f"after:  {outcome.after.line()} in {time.monotonic() - started:.0f}s")
        _finish(config, target, policy, options, outcome, adapter, threads, echo)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return outcome


def _shipped(path: Path, scratch: Path, outcome: Outcome, echo: Echo) -> Path:
    """An adapter tuned elsewhere (``--out`` on a bigger machine): measured like a local one
    (llama.cpp checks the file when it loads it). Needs no torch: a light device can do it."""
    from agent.tune.export import file_sha256

    copy = scratch / "adapter.gguf"
    try:
        shutil.copyfile(path, copy)
    except OSError as exc:
        raise AgentError(f"cannot read {path}: {exc.strerror or exc}") from None
    outcome.sha256, outcome.size = file_sha256(copy), copy.stat().st_size
    echo(f"adapter {path.name}: {outcome.size / 2**20:.1f} MB, sha256 {outcome.sha256}")
    return copy


def _current_adapter(config: Config, target: str, base: ModelFile) -> Path | None:
    found = installed(config.agent.data_dir, target)
    if found is None or found[1].get("base_sha256") != base.sha256:
        return None
    return found[0]


def _prompt(model: Model, sample: data.Sample) -> str:
    prefix, suffix = model.chat(sample.system, sample.user)
    return prefix + suffix


def _train(
    base: ModelFile,
    samples: list[data.Sample],
    prompts: list[str],
    options: Options,
    threads: int,
    outcome: Outcome,
    scratch: Path,
    echo: Echo,
) -> Path:
    from agent.tune.export import write_adapter
    from agent.tune.train import Settings, Tuner

    settings = Settings(
        steps=options.steps,
        batch=options.batch,
        lr=options.lr,
        rank=options.rank,
        alpha=2 * options.rank,
        seed=options.seed,
        threads=threads,
        max_seconds=math.inf if options.max_minutes is None else 60 * options.max_minutes,
        max_rss=int(options.max_memory_gb * 2**30),
    )
    tuner = Tuner(base.path, settings)
    echo(
        f"training {tuner.trainable():,} LoRA parameters (rank {settings.rank}) for "
        f"{settings.steps} steps of {settings.batch}"
    )
    examples = [tuner.encode(p, s.answer) for p, s in zip(prompts, samples, strict=True)]
    if options.federate is None:
        trained = tuner.train(examples, echo)
    else:  # the group's average of everyone's local training, in rounds over MQTT
        trained = options.federate.train(tuner, examples, echo)
    del tuner
    gc.collect()
    if trained.stopped:
        echo(f"training stopped early: {trained.stopped}")
    outcome.steps, outcome.train_seconds = trained.steps, trained.seconds
    outcome.peak_rss = trained.peak_rss
    path = scratch / "adapter.gguf"
    outcome.sha256 = write_adapter(
        path, trained.lora, alpha=trained.alpha, n_head=trained.n_head, n_head_kv=trained.n_head_kv
    )
    outcome.size = path.stat().st_size
    echo(
        f"trained {trained.steps} steps in {trained.seconds:.0f}s (last loss "
        f"{trained.losses[-1]:.3f}, peak {trained.peak_rss / 2**30:.2f} GB); adapter "
        f"{outcome.size / 2**20:.1f} MB, sha256 {outcome.sha256}"
    )
    return path


def _finish(
    config: Config,
    target: str,
    policy: PolicyConfig | None,
    options: Options,
    outcome: Outcome,
    adapter: Path,
    threads: int,
    echo: Echo,
) -> None:
    after = outcome.after
    assert after is not None and outcome.sha256 is not None
    outcome.record = {
        "target": target,
        "sha256": outcome.sha256,
        "size": outcome.size,
        "base_file": outcome.base.name,
        "base_sha256": outcome.base.sha256,
        "steps": outcome.steps,
        "train_seconds": round(outcome.train_seconds, 1),
        "peak_rss": outcome.peak_rss,
        "samples": outcome.samples,
        "before": {"model": outcome.before_name, "accuracy": outcome.before.accuracy},
        "after": {"accuracy": after.accuracy, "sets": after.right, "cases": after.total},
        "ts": time.time(),
    }
    if options.out is not None:
        outcome.adapter = keep_copy(adapter, options.out, target, outcome.record)
        echo(f"adapter kept at {outcome.adapter}")
    if not after.better_than(outcome.before):
        outcome.reason = (
            f"not installed: tuned {after.correct}/{after.cases} right "
            f"({after.wrong_commands} wrong commands) is not better than "
            f"{outcome.before_name} {outcome.before.correct}/{outcome.before.cases} "
            f"({outcome.before.wrong_commands}); keeping {outcome.before_name}"
        )
    elif not options.install:
        outcome.reason = "better, but not installed (--no-install)"
    else:
        path = install_adapter(
            config.agent.data_dir, target, adapter, outcome.record, _trial(config, threads)
        )
        outcome.adapter, outcome.installed = path, True
        outcome.reason = (
            f"installed for {target}: {100 * after.accuracy:.1f}% against "
            f"{100 * outcome.before.accuracy:.1f}% for {outcome.before_name}"
        )
    echo(outcome.reason)


def keep_copy(adapter: Path, out: Path, target: str, record: dict[str, Any]) -> Path:
    import json

    out.mkdir(parents=True, exist_ok=True)
    dest = out / f"{target}-{str(record['sha256'])[:12]}.gguf"
    shutil.copyfile(adapter, dest)
    dest.with_suffix(".json").write_text(json.dumps(record, indent=1, sort_keys=True))
    return dest


def _trial(config: Config, threads: int) -> Callable[[Path], None]:
    """Load the base model with the adapter and answer one case, as the agent will."""

    def trial(path: Path) -> None:
        base = base_model(config)
        with Model(
            base.path,
            threads=threads,
            context=config.model.context,
            sha256=base.sha256,
            lora_path=path,
        ) as m:
            prefix, suffix = m.chat("Answer with one word: yes or no.", "Is 3 more than 2?")
            m.score(prefix, suffix, ["yes", "no"])

    return trial
