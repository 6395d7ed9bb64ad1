"""`edge-agent bench`: the benchmarks, one command each (each a block: add one the same way)."""

from __future__ import annotations

from pathlib import Path

import click

from agent.cli.base import EXAMPLE_HOME, EXIT_FAILURE, EXIT_OK, cli, load, setup_logging
from agent.errors import AgentError


@cli.group()
def bench() -> None:
    """Benchmarks that print ratios against a baseline measured in the same run."""


@bench.command("ingest")
@click.option(
    "-n",
    "--readings",
    "count",
    default=20_000,
    show_default=True,
    help="Readings to publish (QoS 1).",
)
@click.option("--devices", default=20, show_default=True, help="Distinct sensor devices.")
@click.option(
    "--rounds",
    default=1,
    show_default=True,
    help="Alternating baseline/agent rounds; the best of each is reported.",
)
@click.option("--dashboard", is_flag=True,
              help="Also drain with the web dashboard open and streaming, and compare.")
def bench_ingest(count: int, devices: int, rounds: int, dashboard: bool) -> None:
    """Bare paho subscriber vs the agent's full path (validate, clean, persist, ack)."""
    from agent.bench.dashboard import run_dashboard_bench
    from agent.bench.ingest import run_bench

    run = run_dashboard_bench if dashboard else run_bench
    try:
        ok = run(count, devices=devices, rounds=rounds, echo=click.echo)
    except AgentError as exc:
        click.echo(f"bench: {exc}", err=True)
        raise SystemExit(EXIT_FAILURE) from None
    raise SystemExit(EXIT_OK if ok else EXIT_FAILURE)


@bench.command("model")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--threads", default=1, show_default=True, help="Inference threads.")
@click.option("--context", default=512, show_default=True, help="Context window in tokens.")
@click.option("--tokens", default=32, show_default=True, help="New tokens timed per model.")
def bench_model(files: tuple[str, ...], threads: int, context: int, tokens: int) -> None:
    """Load time, prompt and generation tokens/s and memory of each FILE, against the bundled
    model, so you can pick the right file for a device."""
    from agent.bench.model import run_bench

    setup_logging("WARNING")
    try:
        run_bench(
            [Path(f) for f in files], click.echo, threads=threads, context=context, tokens=tokens
        )
    except AgentError as exc:
        click.echo(f"bench: {exc}", err=True)
        raise SystemExit(EXIT_FAILURE) from None


@bench.command("tune")
@click.option(
    "-c",
    "--config",
    "config",
    default=None,
    type=click.Path(dir_okay=False),
    help="Config whose policy and devices are tuned (default: config/home.example.yaml).",
)
@click.option("--policy", default="livingroom-climate", show_default=True, help="Policy to tune.")
@click.option("--steps", default=60, show_default=True, help="Training steps for each tuning.")
@click.option("--cases", default=60, show_default=True, help="Held-out decisions per set.")
@click.option("--skip-intents", is_flag=True, help="Tune and measure decisions only.")
def bench_tune(config: str | None, policy: str, steps: int, cases: int, skip_intents: bool) -> None:
    """Accuracy and decision latency before and after fine-tuning, on held-out decision and
    intent sets; adapter size, tuning time and peak memory (in a scratch data directory)."""
    try:
        from agent.bench.tune import run_bench
    except ImportError as exc:
        click.echo(f"bench: {exc.name} is missing: pip install 'edge-agent[tune]'", err=True)
        raise SystemExit(EXIT_FAILURE) from None

    cfg = load(config or str(EXAMPLE_HOME))
    setup_logging("WARNING")
    try:
        ok = run_bench(
            cfg,
            policy=policy,
            steps=steps,
            cases=cases,
            intents=not skip_intents,
            echo=click.echo,
        )
    except AgentError as exc:
        click.echo(f"bench: {exc}", err=True)
        raise SystemExit(EXIT_FAILURE) from None
    raise SystemExit(EXIT_OK if ok else EXIT_FAILURE)


@bench.command("federated")
def bench_federated() -> None:
    """Federated (FedAvg) against pooled training of the decision head, over simulated homes
    with their own data; bytes per round per agent; with secure aggregation and DP."""
    from agent.bench.federated import run_bench

    setup_logging("WARNING")
    try:
        ok = run_bench(click.echo)
    except AgentError as exc:
        click.echo(f"bench: {exc}", err=True)
        raise SystemExit(EXIT_FAILURE) from None
    raise SystemExit(EXIT_OK if ok else EXIT_FAILURE)


@bench.command("decide")
@click.option(
    "-c",
    "--config",
    "config",
    default=None,
    type=click.Path(dir_okay=False),
    help="Config whose policies and devices are measured (default: config/home.example.yaml).",
)
@click.option(
    "-n",
    "--situations",
    default=200,
    show_default=True,
    help="Labelled situations per accuracy set.",
)
@click.option("--runs", default=20, show_default=True, help="Decisions timed for latency.")
@click.option(
    "--policy",
    "policies",
    multiple=True,
    help="Measure only this policy's engines (repeatable; default: every policy "
    "with targets, a few minutes each).",
)
def bench_decide(config: str | None, situations: int, runs: int, policies: tuple[str, ...]) -> None:
    """Engine and intent accuracy, decision latency against raw llama.cpp, safety fuzzing."""
    from agent.bench.decide import run_bench

    cfg = load(config or str(EXAMPLE_HOME))
    setup_logging("WARNING")
    try:
        run_bench(
            cfg, situations_n=situations, runs=runs, echo=click.echo, only=list(policies) or None
        )
    except AgentError as exc:
        click.echo(f"bench: {exc}", err=True)
        raise SystemExit(EXIT_FAILURE) from None


@bench.command("intents")
@click.option(
    "--language",
    "languages",
    multiple=True,
    help="Template language to measure (repeatable; default: en, de, zh-CN).",
)
def bench_intents(languages: tuple[str, ...]) -> None:
    """Requests understood without a model: Home Assistant's test sentences per language, the
    generated set, adversarial requests; exact, wrong, refused, to the model, latency, memory."""
    from agent.bench.intents import LANGUAGES, run_bench

    setup_logging("WARNING")
    try:
        run_bench(click.echo, languages or LANGUAGES)
    except AgentError as exc:
        click.echo(f"bench: {exc}", err=True)
        raise SystemExit(EXIT_FAILURE) from None


@bench.command("diagnose")
@click.option("--seeds", default=20, show_default=True, help="Faulty days per fault kind.")
@click.option("--healthy", default=30, show_default=True, help="Healthy days.")
def bench_diagnose(seeds: int, healthy: int) -> None:
    """Fault diagnosis over seeded simulated days (held-out seeds and fault sizes): precision,
    recall and time to detect per fault kind, false alarms per device-day on healthy days."""
    from agent.bench.diagnose import run_bench

    setup_logging("WARNING")
    ok = run_bench(seeds=seeds, healthy=healthy, echo=click.echo)
    raise SystemExit(EXIT_OK if ok else EXIT_FAILURE)
