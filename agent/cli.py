"""The ``edge-agent`` command line: parse, wire objects, map errors to exit codes.

Exit codes (SPEC 8): 0 ok, 1 runtime failure, 2 bad usage or bad configuration.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from agent import __version__
from agent.config import Config, load_config
from agent.errors import AgentError, ConfigError

if TYPE_CHECKING:
    from agent.tune.fedlora import FedTune

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
CONFIG_HELP = "The agent's YAML configuration file."
ROOT = Path(__file__).resolve().parent.parent


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def _load(path: str) -> Config:
    """Load a config or leave with exit code 2 and every error."""
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(
            f"{path}: invalid configuration ({len(exc.errors)} "
            f"error{'s' if len(exc.errors) != 1 else ''}):",
            err=True,
        )
        for line in exc.errors:
            click.echo(f"  {line}", err=True)
        raise SystemExit(EXIT_USAGE) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edge-agent")
def cli() -> None:
    """edge-agent: clean sensor readings from MQTT, keep them in SQLite, decide, act."""


@cli.command("check-config")
@click.argument("config", type=click.Path(dir_okay=False))
def check_config(config: str) -> None:
    """Validate CONFIG; exit 0 if valid, else list every error with its path and exit 2."""
    cfg = _load(config)
    click.echo(
        f"{config}: ok (agent {cfg.agent.id}, broker {cfg.mqtt.host}:{cfg.mqtt.port}, "
        f"{len(cfg.sensors)} sensor kinds, {len(cfg.policies)} policies)"
    )


@cli.command()
@click.option(
    "-c", "--config", "config", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    help="Override agent.log_level.",
)
def run(config: str, log_level: str | None) -> None:
    """Run the agent in the foreground until SIGTERM or Ctrl-C (what the service runs)."""
    from agent.service.runtime import Agent

    cfg = _load(config)
    setup_logging(log_level or cfg.agent.log_level)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logging.getLogger("agent").info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        agent = Agent(cfg)

        def on_hup(signum: int, frame: FrameType | None) -> None:
            logging.getLogger("agent").info("received SIGHUP, reloading %s", config)
            threading.Thread(
                target=agent.reload, args=[Path(config)], name="reload", daemon=True
            ).start()

        signal.signal(signal.SIGHUP, on_hup)
        code = agent.run(stop)
    except AgentError as exc:
        click.echo(f"edge-agent: {exc}", err=True)
        raise SystemExit(EXIT_FAILURE) from None
    raise SystemExit(code)


def _open_store(config: str) -> tuple[Config, object]:
    from agent.storage import Store

    cfg = _load(config)
    if not cfg.db_path.exists():
        raise click.ClickException(f"no database yet at {cfg.db_path}")
    return cfg, Store(cfg.db_path, cfg.storage.synchronous)


@cli.command()
@click.option(
    "-c", "--config", "config", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP
)
@click.option("--device", help="Only this device.")
@click.option("--quantity", help="Only this quantity.")
@click.option("-n", "--limit", default=20, show_default=True, help="How many rows.")
def readings(config: str, device: str | None, quantity: str | None, limit: int) -> None:
    """Print the newest stored readings: raw as sent, converted, cleaned."""
    from agent.storage import Store

    _, store = _open_store(config)
    assert isinstance(store, Store)
    rows = store.recent(limit, device, quantity)
    click.echo(
        f"{'time':19}  {'device/quantity':32} {'seq':>7} {'raw':>10} {'value':>10} "
        f"{'clean':>10}  unit  outlier"
    )
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.ts))
        raw = f"{r.raw:g}{r.raw_unit or ''}"
        seq = "" if r.seq is None else str(r.seq)
        click.echo(
            f"{when}  {r.device + '/' + r.quantity:32} {seq:>7} {raw:>10} {r.value:>10.4g} "
            f"{r.clean:>10.4g}  {r.unit or '':5} {'yes' if r.outlier else ''}"
        )
    click.echo(f"{store.count()} readings stored in {store.path}")


@cli.command()
@click.option(
    "-c", "--config", "config", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP
)
@click.option("--window", "window", help='A window such as "5m" (default: every configured one).')
def features(config: str, window: str | None) -> None:
    """Print the windowed features of every series, computed from the stored readings."""
    from agent.config import parse_duration
    from agent.pipeline.core import Pipeline
    from agent.storage import Store

    cfg, store = _open_store(config)
    assert isinstance(store, Store)
    try:
        windows = [parse_duration(window)] if window else sorted(cfg.features.windows)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--window") from None
    pipeline = Pipeline(cfg)
    now = time.time()
    for device, quantity in store.series():
        pipeline.restore(device, quantity, store.points(device, quantity, now - max(windows)))
    click.echo(
        f"{'device/quantity':32} {'window':>7} {'count':>6} {'mean':>9} {'min':>9} "
        f"{'max':>9} {'std':>8} {'slope/min':>9} {'last':>9} {'age':>8}"
    )
    for device, quantity in pipeline.series():
        for w in windows:
            f = pipeline.features(device, quantity, w, now)
            if f is None:
                continue
            slope = "" if f.slope_per_min is None else f"{f.slope_per_min:.3g}"
            click.echo(
                f"{device + '/' + quantity:32} {w:>6g}s {f.count:>6} {f.mean:>9.4g} "
                f"{f.min:>9.4g} {f.max:>9.4g} {f.std:>8.3g} {slope:>9} {f.last:>9.4g} "
                f"{f.age_s:>7.1f}s"
            )


@cli.command()
@click.option(
    "-c", "--config", "config", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP
)
@click.option("-n", "--limit", default=20, show_default=True, help="How many decisions.")
@click.option("--policy", help="Only this policy.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def audit(config: str, limit: int, policy: str | None, as_json: bool) -> None:
    """Print recent decisions: digest, engine, scores, action, safety verdict, command."""
    import json

    from agent.storage import Store

    _, store = _open_store(config)
    assert isinstance(store, Store)
    for row in store.audit_recent(limit, policy):
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
            continue
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(row["ts"])))  # type: ignore[arg-type]
        value = "" if row["value"] is None else f" {row['value']}"
        scores = json.loads(str(row["scores"]))
        shown = " ".join(f"{k}={v:.2f}" for k, v in scores.items())
        click.echo(
            f"{when} {row['policy']} [{row['engine']}, {row['source']}] "
            f"{row['action']}{value} ({shown}) -> {row['verdict']}"
            f"{'' if not row['command_id'] else ', command ' + str(row['command_id'])}"
        )
        click.echo(f"    {row['digest']}")


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False), required=False)
@click.option("--force", is_flag=True, help="Replace an existing key file.")
@click.option(
    "--update",
    is_flag=True,
    help="Make the Ed25519 model-update key pair instead: PATH (private, stays on the "
    "operator's machine, for model push --key) and PATH.pub (security.update_public_key_file "
    "on every agent).",
)
@click.option("--identity", "identity", type=click.Path(dir_okay=False),
              help="Instead: write this agent's own Ed25519 key pair (security."
                   "identity_key_file) to IDENTITY (0600) and its public key to IDENTITY.pub, "
                   "the line to add to the site roster.")
def keygen(path: str | None, force: bool, update: bool, identity: str | None) -> None:
    """Write a new random command-signing key to PATH (mode 0600) for security.command_key_file;
    give the same file to every agent and actuator of a site. With --update, the operator's
    model-update key pair; with --identity, this agent's own peer key pair."""
    from agent.policy.signing import generate_key_file

    if identity is not None:
        _keygen_identity(Path(identity), force)
        return
    if path is None:
        raise click.UsageError("give PATH (the command key), --update PATH or --identity PATH")
    if update:
        _keygen_update(Path(path), force)
        return
    try:
        generate_key_file(Path(path), overwrite=force)
    except (AgentError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote a 256-bit key to {path}")


@cli.command()
@click.option("-c", "--config", type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--setup", "model_only", is_flag=True,
              help="Only the model check (what scripts/setup runs after installing).")
@click.option("--timeout", type=float, default=300.0, show_default=True,
              help="Seconds the model trial may take.")
def doctor(config: str | None, model_only: bool, timeout: float) -> None:
    """Check that this machine can run the agent: the model in a child process (a prompt of 64+
    tokens, an embedding, a short generation: tokens/s, memory, llama.cpp's build), CPU
    features, the broker, the data directory and the key files. Exit 1 if the model cannot
    run here (a crash such as SIGILL is one line saying how to rebuild) or, with -c, if
    anything the configuration needs is missing."""
    from agent.service.doctor import run_doctor

    cfg = Config() if config is None else _load(config)
    raise SystemExit(
        run_doctor(cfg, click.echo, configured=config is not None, model_only=model_only,
                   timeout=timeout)
    )


def _keygen_update(path: Path, force: bool) -> None:
    from agent.service.updatekey import generate_key_pair

    try:
        public = generate_key_pair(path, overwrite=force)
    except AgentError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"wrote the private update key to {path} (keep it on this machine) and its public key "
        f"to {public} (copy it to every agent as security.update_public_key_file)"
    )


def _keygen_identity(path: Path, force: bool) -> None:
    from agent.peers.identity import write_identity

    try:
        public = write_identity(path, overwrite=force)
    except (AgentError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote the private key to {path} (keep it on this agent) and the public key to "
               f"{path}.pub; add this line, with the agent's id, to the site roster:\n"
               f"<agent id>: {public}")


@cli.group()
def service() -> None:
    """Install or remove the systemd unit that runs this agent."""


@service.command("install")
@click.option(
    "-c",
    "--config",
    "config",
    default="/etc/edge-agent/agent.yaml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help=CONFIG_HELP,
)
@click.option(
    "--user",
    default="edge-agent",
    show_default=True,
    help="The system user the agent runs as (created if missing).",
)
@click.option("--now", is_flag=True, help="Start the service at once.")
def service_install(config: str, user: str, now: bool) -> None:
    """Write, enable (and with --now start) a hardened Type=notify unit with a watchdog."""
    from agent.service.install import install

    _load(config)
    try:
        done = install(Path(config).resolve(), user, start=now)
    except (AgentError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    for warning in done.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        f"installed {done.unit_path}" + (f"; created user {user}" if done.created_user else "")
    )


@service.command("uninstall")
def service_uninstall() -> None:
    """Stop, disable and remove the unit (the user and the data stay)."""
    from agent.service.install import uninstall

    try:
        uninstall()
    except (AgentError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("removed the edge-agent unit")


@cli.command()
@click.option(
    "-c", "--config", "config", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP
)
@click.option(
    "--wait", default=2.0, show_default=True, help="Seconds to collect the retained statuses."
)
def status(config: str, wait: float) -> None:
    """Print the live status of this agent and its peers, from the broker's retained topics."""
    from agent.service.statusview import collect, render

    cfg = _load(config)
    try:
        statuses = collect(cfg, wait)
    except AgentError as exc:
        click.echo(f"status: {exc}", err=True)
        raise SystemExit(EXIT_FAILURE) from None
    click.echo("\n".join(render(statuses, cfg.agent.id)))


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
    from agent.service.decisions import train_heads

    cfg = _load(config)
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
def tune(
    config: str,
    policy: str | None,
    intents: bool,
    steps: int,
    max_minutes: float | None,
    samples: int,
    cases: int,
    threads: int | None,
    max_memory: float,
    out: str | None,
    no_install: bool,
    dry_run: bool,
    from_file: str | None,
    group: str | None,
    rounds: int,
    min_members: int,
) -> None:
    """Fine-tune the model (a LoRA adapter) for one policy's llm engine or for intents, score it
    against the model in use on held-out cases, and install it only if it is better. Exit 0
    when installed (or --no-install/--dry-run), 1 when it was not better or failed."""
    cfg = _load(config)
    if (policy is None) == (not intents):
        raise click.UsageError("give exactly one of --policy NAME and --intents")
    if steps < 1 or samples < 1 or cases < 1:
        raise click.UsageError("--steps, --samples and --cases must be at least 1")
    if from_file is not None and group is not None:
        raise click.UsageError("--from-file and --federate exclude each other")
    if rounds < 1 or min_members < 1 or (group is not None and steps < rounds):
        raise click.UsageError("--rounds and --min-members must be at least 1, --steps >= --rounds")
    setup_logging("WARNING")
    if dry_run:
        _tune_dry_run(cfg, policy, samples)
        return
    federate = None
    if group is not None:
        from agent.inference.adapters import INTENTS, policy_target
        from agent.tune.fedlora import FedTune

        target = INTENTS if policy is None else policy_target(policy)
        federate = FedTune(cfg.mqtt, cfg.agent.id, group, target, rounds=rounds,
                           min_members=min_members)
        try:
            federate.check_broker()
        except AgentError as exc:
            click.echo(f"tune: {exc}", err=True)
            raise SystemExit(EXIT_FAILURE) from None
    _tune_run(cfg, policy, steps, max_minutes, samples, cases, threads, max_memory, out,
              no_install, federate, None if from_file is None else Path(from_file))


def _tune_dry_run(cfg: Config, policy: str | None, samples: int) -> None:
    from agent.tune.run import find_policy, samples_for

    try:
        made = samples_for(
            cfg, None if policy is None else find_policy(cfg, policy), samples, click.echo
        )
    except AgentError as exc:
        click.echo(f"tune: {exc}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    for sample in made[:3]:
        click.echo(f"  user: {sample.user}\n  answer: {sample.answer}")


def _tune_run(
    cfg: Config,
    policy: str | None,
    steps: int,
    max_minutes: float | None,
    samples: int,
    cases: int,
    threads: int | None,
    max_memory: float,
    out: str | None,
    no_install: bool,
    federate: FedTune | None = None,
    adapter_file: Path | None = None,
) -> None:
    try:
        if adapter_file is None:  # training needs torch, transformers, peft: the tune extra
            import agent.tune.train  # noqa: F401
        from agent.tune.run import Options, find_policy
        from agent.tune.run import tune as run_tune
    except ImportError as exc:
        click.echo(f"tune: {exc.name} is missing: pip install 'edge-agent[tune]'", err=True)
        raise SystemExit(EXIT_FAILURE) from None
    if policy is not None:
        try:
            find_policy(cfg, policy)
        except AgentError as exc:
            click.echo(f"tune: {exc}", err=True)
            raise SystemExit(EXIT_USAGE) from None
    options = Options(
        steps=steps,
        max_minutes=max_minutes,
        samples=samples,
        cases=cases,
        threads=threads,
        max_memory_gb=max_memory,
        install=not no_install,
        out=None if out is None else Path(out),
        federate=federate,
        adapter_file=adapter_file,
    )
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        outcome = run_tune(cfg, policy, options, click.echo)
    except KeyboardInterrupt:
        click.echo("tune: interrupted; the model in use is unchanged", err=True)
        raise SystemExit(EXIT_FAILURE) from None
    except AgentError as exc:
        click.echo(f"tune: {exc}", err=True)
        raise SystemExit(EXIT_FAILURE) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    better = outcome.after is not None and outcome.after.better_than(outcome.before)
    raise SystemExit(EXIT_OK if outcome.installed or (better and no_install) else EXIT_FAILURE)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@cli.group()
def model() -> None:
    """Send, quantize and compare GGUF model files."""


@model.command("push")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "-c", "--config", "config", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP
)
@click.option(
    "--key",
    "key_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The private update key (made by keygen --update) that signs the manifest.",
)
@click.option("--agent", "agent_id", help="The agent to update (default: the config's agent.id).")
@click.option(
    "--version",
    "version",
    type=click.IntRange(1, (1 << 53) - 1),
    help="The update's version; the agent takes only versions above the last it accepted "
    "(default: the time in milliseconds).",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(1024, 1 << 20),
    help="Bytes per chunk, 1 KiB to 1 MiB (default: 256 KiB, more for very large files).",
)
def model_push(
    file: str,
    config: str,
    key_file: str,
    agent_id: str | None,
    version: int | None,
    chunk_size: int | None,
) -> None:
    """Send FILE to an agent as a model update signed with the update key (a manifest, then
    QoS 1 chunks)."""
    from agent.service.modelpush import push
    from agent.service.updatekey import load_private

    cfg = _load(config)

    def progress(done: int, total: int) -> None:
        click.echo(f"\r{done}/{total} chunks acknowledged", nl=False, err=True)

    try:
        m = push(
            Path(file),
            cfg.mqtt.host,
            cfg.mqtt.port,
            cfg.mqtt.prefix,
            agent_id or cfg.agent.id,
            load_private(Path(key_file)),
            chunk_size,
            progress,
            version=version,
            mqtt=cfg.mqtt,
        )
    except AgentError as exc:
        click.echo(err=True)
        raise click.ClickException(str(exc)) from None
    click.echo(err=True)
    click.echo(
        f"sent {m.name} ({m.size} bytes, sha256 {m.sha256}) as version {m.version} "
        f"in {m.chunks} chunks"
    )


@model.command("quantize")
@click.argument("src", type=click.Path(exists=True, dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option(
    "--type",
    "kind",
    required=True,
    help="q4_0, q4_1, q8_0 or q4_k_m.",
    type=click.Choice(["q4_0", "q4_1", "q8_0", "q4_k_m"], case_sensitive=False),
)
@click.option("--threads", default=0, show_default=True, help="Threads (0: every core).")
@click.option("--force", is_flag=True, help="Replace DST if it exists.")
def model_quantize(src: str, dst: str, kind: str, threads: int, force: bool) -> None:
    """Quantize the GGUF model SRC into DST with llama.cpp's own quantizer."""
    from agent.inference.quantize import quantize

    setup_logging("WARNING")
    try:
        out = quantize(Path(src), Path(dst), kind, threads=threads, overwrite=force)
    except AgentError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {kind})")


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
def bench_ingest(count: int, devices: int, rounds: int) -> None:
    """Bare paho subscriber vs the agent's full path (validate, clean, persist, ack)."""
    from agent.bench.ingest import run_bench

    try:
        ok = run_bench(count, devices=devices, rounds=rounds, echo=click.echo)
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

    cfg = _load(config or str(ROOT / "config" / "home.example.yaml"))
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

    cfg = _load(config or str(ROOT / "config" / "home.example.yaml"))
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


@cli.command()
@click.option(
    "-c",
    "--config",
    "config",
    default=None,
    type=click.Path(dir_okay=False),
    help="Agent config of the home (default: config/home.example.yaml).",
)
@click.option(
    "-s",
    "--scenario",
    default="normal-day",
    show_default=True,
    help="A scenario name from config/scenarios/ or a scenario file.",
)
@click.option(
    "--duration",
    default=120.0,
    show_default=True,
    help="Real seconds to run (Ctrl-C stops earlier).",
)
@click.option(
    "--speed", default=120.0, show_default=True, help="Simulated seconds per real second."
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False),
    help="Write a PNG chart of each room's temperature with the commands marked.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="Where the demo keeps its database, key and trained heads (default: data/demo).",
)
@click.option("--no-agent", is_flag=True, help="Run the home with nobody acting, to compare.")
@click.option("--headless", is_flag=True, help="Progress lines instead of the live view.")
def demo(
    config: str | None,
    scenario: str,
    duration: float,
    speed: float,
    report: str | None,
    data_dir: str | None,
    no_agent: bool,
    headless: bool,
) -> None:
    """Run a broker, a simulated home and the agent on this machine, and show what happens."""
    from agent.demo import run_demo

    if config:
        _load(config)  # exit 2 with every error before anything starts
    setup_logging("ERROR")
    try:
        run_demo(
            config_path=Path(config) if config else None,
            scenario=scenario,
            duration=duration,
            speed=speed,
            data_dir=Path(data_dir) if data_dir else None,
            report=Path(report) if report else None,
            with_agent=not no_agent,
            live=False if headless else None,
            echo=click.echo,
        )
    except ConfigError as exc:
        click.echo("demo: invalid scenario or config:", err=True)
        for line in exc.errors:
            click.echo(f"  {line}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    except AgentError as exc:
        click.echo(f"demo: {exc}", err=True)
        raise SystemExit(EXIT_FAILURE) from None


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="edge-agent", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
