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
@click.option("--pinned/--no-pinned", "pin", default=True, show_default=True,
              help="One more round with the bench pinned to one core and the broker to another.")
@click.option("--dashboard", is_flag=True,
              help="Also drain with the web dashboard open and streaming, and compare.")
def bench_ingest(count: int, devices: int, rounds: int, pin: bool, dashboard: bool) -> None:
    """Bare paho subscriber vs the agent's full path (validate, clean, persist, ack):
    readings/s and CPU seconds per 1,000 readings, side by side, and on one core; with
    --dashboard, the agent with the web dashboard streaming against without it."""
    from agent.bench.dashboard import run_dashboard_bench
    from agent.bench.ingest import run_bench

    try:
        if dashboard:
            ok = run_dashboard_bench(count, devices=devices, rounds=rounds, echo=click.echo)
        else:
            ok = run_bench(count, devices=devices, rounds=rounds, echo=click.echo, pin=pin)
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
@click.option("--engine/--no-engine", default=True, show_default=True,
              help="Also run the model's diagnose engines (the bundled model, one thread) and "
              "the engine the gate picks, side by side with the statistical detectors.")
def bench_diagnose(seeds: int, healthy: int, engine: bool) -> None:
    """Fault diagnosis over seeded simulated days (held-out seeds and fault sizes): precision,
    recall and time to detect per fault kind, false alarms per device-day on healthy days,
    for the statistical detectors and each diagnose engine, and the time a room spends out of
    band during a sensor fault with and without diagnosis."""
    from agent.bench.diagnose import run_bench
    from agent.bench.outofband import run_outofband

    setup_logging("WARNING")
    try:
        ok = run_bench(seeds=seeds, healthy=healthy, echo=click.echo, engine=engine)
    except AgentError as exc:
        click.echo(f"bench: {exc}", err=True)
        raise SystemExit(EXIT_FAILURE) from None
    run_outofband(seeds=seeds, echo=click.echo)
    raise SystemExit(EXIT_OK if ok else EXIT_FAILURE)


@bench.command("e2e")
@click.option("--engine", "engines", multiple=True, type=click.Choice(["rules", "embed", "llm"]),
              help="Engine to measure (repeatable; default: rules and embed, side by side).")
@click.option("--rate", default=500.0, show_default=True,
              help="Readings per second streamed from 20 other devices meanwhile (0: none).")
@click.option("--crossings", default=40, show_default=True, help="Band crossings timed per engine.")
@click.option("--every", default=0.5, show_default=True, help="Seconds between two crossings.")
def bench_e2e(engines: tuple[str, ...], rate: float, crossings: int, every: float) -> None:
    """Reading -> signed command on the wire (p50/p95/p99 per engine), readings/s sustained
    and resident memory of `edge-agent run` on a private broker, engines side by side."""
    from agent.bench.e2e import run_bench

    setup_logging("WARNING")
    try:
        ok = run_bench(engines=list(engines) or ["rules", "embed"], rate=rate,
                       crossings=crossings, every=every, echo=click.echo)
    except AgentError as exc:
        click.echo(f"bench: {exc}", err=True)
        raise SystemExit(EXIT_FAILURE) from None
    raise SystemExit(EXIT_OK if ok else EXIT_FAILURE)


@bench.command("memory")
@click.option("--engine", "engines", multiple=True, type=click.Choice(["rules", "embed", "llm"]),
              help="Engine to measure (repeatable; default: rules and embed).")
@click.option("--seconds", default=20.0, show_default=True,
              help="Load period before the memory is read (e.g. 3600 for an hour).")
@click.option("--rate", default=200.0, show_default=True,
              help="Readings per second from 20 simulated devices meanwhile.")
def bench_memory(engines: tuple[str, ...], seconds: float, rate: float) -> None:
    """Resident memory (now and peak; own and mapped) of `edge-agent run` with the bundled
    model after a load period, one run per engine, against 160 MB."""
    from agent.bench.memory import run_bench

    setup_logging("WARNING")
    try:
        ok = run_bench(engines=list(engines) or ["rules", "embed"], seconds=seconds, rate=rate,
                       echo=click.echo)
    except AgentError as exc:
        click.echo(f"bench: {exc}", err=True)
        raise SystemExit(EXIT_FAILURE) from None
    raise SystemExit(EXIT_OK if ok else EXIT_FAILURE)
