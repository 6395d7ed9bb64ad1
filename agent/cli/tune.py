"""Learning on this machine: `edge-agent tune` (a LoRA adapter) and `edge-agent train-heads`."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from agent.cli.base import (
    CONFIG_HELP,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    cli,
    fail,
    load,
    setup_logging,
)
from agent.config import Config
from agent.errors import AgentError

if TYPE_CHECKING:
    from agent.tune.fedlora import FedTune
    from agent.tune.run import Options, Outcome


@dataclass(frozen=True)
class TuneArgs:
    """The options of ``edge-agent tune`` as given on the command line."""

    config: str
    policy: str | None
    intents: bool
    steps: int
    max_minutes: float | None
    samples: int
    cases: int
    threads: int | None
    max_memory: float
    out: str | None
    no_install: bool
    dry_run: bool
    from_file: str | None
    group: str | None
    rounds: int
    min_members: int

    def check(self) -> None:
        """Refuse combinations that make no sense (exit 2)."""
        if (self.policy is None) == (not self.intents):
            raise click.UsageError("give exactly one of --policy NAME and --intents")
        if self.steps < 1 or self.samples < 1 or self.cases < 1:
            raise click.UsageError("--steps, --samples and --cases must be at least 1")
        if self.from_file is not None and self.group is not None:
            raise click.UsageError("--from-file and --federate exclude each other")
        federated = self.group is not None
        if self.rounds < 1 or self.min_members < 1 or (federated and self.steps < self.rounds):
            raise click.UsageError(
                "--rounds and --min-members must be at least 1, --steps >= --rounds"
            )

    def options(self, federate: FedTune | None) -> Options:
        """The tuning run's options (agent.tune.run.Options)."""
        from agent.tune.run import Options

        return Options(
            steps=self.steps,
            max_minutes=self.max_minutes,
            samples=self.samples,
            cases=self.cases,
            threads=self.threads,
            max_memory_gb=self.max_memory,
            install=not self.no_install,
            out=None if self.out is None else Path(self.out),
            federate=federate,
            adapter_file=None if self.from_file is None else Path(self.from_file),
        )


@cli.command()
@click.option(
    "-c", "--config", "config", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP
)
@click.option("--policy", "policy", default=None, help="Tune the llm engine of this policy.")
@click.option("--intents", is_flag=True, help="Tune the model for intents (the device registry).")
@click.option("--steps", default=60, show_default=True, help="Training steps (batches of 8).")
@click.option(
    "--max-minutes",
    type=float,
    default=None,
    help="Stop training after this long (keeps what it learnt so far).",
)
@click.option("--samples", default=480, show_default=True, help="Training samples to generate.")
@click.option(
    "--cases", default=60, show_default=True, help="Held-out decisions per set (before and after)."
)
@click.option("--threads", type=int, default=None, help="CPU threads (default: the free cores).")
@click.option(
    "--max-memory",
    "max_memory",
    default=6.0,
    show_default=True,
    help="Stop training when the process grows past this many GB.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Also keep the adapter GGUF and its record in this directory.",
)
@click.option("--no-install", is_flag=True, help="Measure, but never install the result.")
@click.option("--dry-run", is_flag=True, help="Show the training samples and stop.")
@click.option(
    "--federate",
    "group",
    default=None,
    metavar="GROUP",
    help="Train with the other devices of GROUP that run the same command: their LoRA "
    "weights are averaged over MQTT (FedAvg), their data stays on each device.",
)
@click.option(
    "--from-file",
    "from_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Do not train: measure this adapter GGUF (e.g. tuned elsewhere with --out) against "
    "the model in use, and install it if better.",
)
@click.option("--rounds", default=3, show_default=True, help="Federated rounds (--federate).")
@click.option(
    "--min-members", default=2, show_default=True, help="Devices needed to start (--federate)."
)
def tune(**given: Any) -> None:
    """Fine-tune the model (a LoRA adapter) for one policy's llm engine or for intents, score it
    against the model in use on held-out cases, and install it only if it is better. Exit 0
    when installed (or --no-install/--dry-run), 1 when it was not better or failed."""
    args = TuneArgs(**given)
    cfg = load(args.config)
    args.check()
    setup_logging("WARNING")
    if args.dry_run:
        _dry_run(cfg, args.policy, args.samples)
        return
    federate = None if args.group is None else _federation(cfg, args.group, args)
    run_tune = _tuner(cfg, args.policy, training=args.from_file is None)
    options = args.options(federate)
    outcome = _interruptible(lambda: run_tune(cfg, args.policy, options, click.echo))
    better = outcome.after is not None and outcome.after.better_than(outcome.before)
    raise SystemExit(EXIT_OK if outcome.installed or (better and args.no_install) else EXIT_FAILURE)


def _dry_run(cfg: Config, policy: str | None, samples: int) -> None:
    from agent.tune.run import find_policy, samples_for

    try:
        made = samples_for(
            cfg, None if policy is None else find_policy(cfg, policy), samples, click.echo
        )
    except AgentError as exc:
        raise fail("tune", exc, EXIT_USAGE) from None
    for sample in made[:3]:
        click.echo(f"  user: {sample.user}\n  answer: {sample.answer}")


def _federation(cfg: Config, group: str, args: TuneArgs) -> FedTune:
    """The group to train with, its broker checked before anything else is done."""
    from agent.inference.adapters import INTENTS, policy_target
    from agent.tune.fedlora import FedTune

    target = INTENTS if args.policy is None else policy_target(args.policy)
    federate = FedTune(cfg.mqtt, cfg.agent.id, group, target, rounds=args.rounds,
                       min_members=args.min_members)
    try:
        federate.check_broker()
    except AgentError as exc:
        raise fail("tune", exc) from None
    return federate


Tuner = Callable[[Config, "str | None", "Options", Callable[[str], None]], "Outcome"]


def _tuner(cfg: Config, policy: str | None, training: bool) -> Tuner:
    """agent.tune.run.tune, once the libraries it needs are known to be installed and the
    policy named exists."""
    try:
        if training:  # training needs torch, transformers, peft: the tune extra
            import agent.tune.train  # noqa: F401
        from agent.tune.run import find_policy
        from agent.tune.run import tune as run_tune
    except ImportError as exc:
        raise fail("tune", f"{exc.name} is missing: pip install 'edge-agent[tune]'") from None
    if policy is not None:
        try:
            find_policy(cfg, policy)
        except AgentError as exc:
            raise fail("tune", exc, EXIT_USAGE) from None
    return run_tune


def _interruptible(run: Callable[[], Outcome]) -> Outcome:
    """Run with SIGTERM as Ctrl-C: either leaves the model in use unchanged."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run()
    except KeyboardInterrupt:
        raise fail("tune", "interrupted; the model in use is unchanged") from None
    except AgentError as exc:
        raise fail("tune", exc) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@cli.command("train-heads")
@click.option(
    "-c", "--config", "config", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Where to write them (default: the config's data_dir/heads).",
)
def train_heads_command(config: str, out_dir: str | None) -> None:
    """Train the embed policies' decision heads ahead of time (what the agent does at its first
    start), e.g. on a bigger machine for a fleet; the agent still gates them at start."""
    from agent.inference.locate import locate
    from agent.inference.model import Model
    from agent.inference.threads import pick_threads
    from agent.service.learning import train_heads

    cfg = load(config)
    setup_logging("WARNING")
    try:
        found = locate(cfg.model.path)
        with Model(
            found.path, threads=pick_threads(None), context=cfg.model.context, sha256=found.sha256
        ) as m:
            train_heads(
                cfg,
                m.embed,
                Path(out_dir) if out_dir else cfg.agent.data_dir / "heads",
                found.sha256,
                click.echo,
            )
    except AgentError as exc:
        raise click.ClickException(str(exc)) from None
