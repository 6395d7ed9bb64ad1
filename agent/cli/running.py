"""Running the agent and looking inside it: run, check-config, status, health, readings,
features, audit."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from agent.cli.base import CONFIG_HELP, EXIT_FAILURE, cli, fail, load, setup_logging
from agent.config import Config
from agent.errors import AgentError

if TYPE_CHECKING:
    from agent.storage import Store


@cli.command("check-config")
@click.argument("config", type=click.Path(dir_okay=False))
def check_config(config: str) -> None:
    """Validate CONFIG; exit 0 if valid, else list every error with its path and exit 2."""
    cfg = load(config)
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

    cfg = load(config)
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
        web = None
        if cfg.web is not None:  # starlette, uvicorn, jinja2 and anyio: 3.5 MB not imported
            from agent.web.server import serve_dashboard

            web = serve_dashboard(agent)  # before run: it shows the agent starting too
        try:
            code = agent.run(stop)
        finally:
            if web is not None:
                web.stop()
    except AgentError as exc:
        raise fail("edge-agent", exc) from None
    raise SystemExit(code)


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

    cfg = load(config)
    try:
        statuses = collect(cfg, wait)
    except AgentError as exc:
        raise fail("status", exc, EXIT_FAILURE) from None
    click.echo("\n".join(render(statuses, cfg.agent.id)))


@cli.group(invoke_without_command=True)
@click.option("-c", "--config", "config", type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option(
    "--wait", default=5.0, show_default=True, help="Seconds to collect the retained health topics."
)
@click.pass_context
def health(ctx: click.Context, config: str | None, wait: float) -> None:
    """Print the health of every series and actuator the agent diagnoses (ok, suspect, faulty;
    since when; the engine that judged it; the evidence and a one-sentence explanation), from
    the retained health topics. ``confirm`` and ``dismiss`` answer a fault."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        raise click.UsageError("Missing option '-c' / '--config'.")
    from agent.service.healthview import health_lines

    cfg = load(config)
    try:
        lines = health_lines(cfg, timeout=wait)
    except AgentError as exc:
        raise fail("health", exc) from None
    click.echo("\n".join(lines))


def _answer(config: str, device: str, quantity: str, words: str, timeout: float) -> None:
    """Say it to the agent as a person would, on its intents topic, and print its reply."""
    from agent.mqtt.request import ask

    cfg = load(config)
    topic = f"{cfg.mqtt.prefix}/agents/{cfg.agent.id}/intents"
    try:
        reply = ask(cfg.mqtt, topic, f"{device} {quantity} {words}", timeout=timeout)
    except AgentError as exc:
        raise fail("health", exc) from None
    if not reply.get("ok"):
        raise click.ClickException(str(reply.get("error")))
    click.echo(reply.get("diagnosis", {}).get("explanation", "done"))


@health.command("confirm")
@click.argument("device")
@click.argument("quantity")
@click.option(
    "-c", "--config", "config", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP
)
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for the agent.")
def health_confirm(device: str, quantity: str, config: str, timeout: float) -> None:
    """Confirm that the fault the agent reports on DEVICE QUANTITY is real: it is stored as a
    label the diagnose heads learn from, and the alarm stays."""
    _answer(config, device, quantity, "is broken", timeout)


@health.command("dismiss")
@click.argument("device")
@click.argument("quantity")
@click.option(
    "-c", "--config", "config", required=True, type=click.Path(dir_okay=False), help=CONFIG_HELP
)
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for the agent.")
def health_dismiss(device: str, quantity: str, config: str, timeout: float) -> None:
    """Say that DEVICE QUANTITY is fine: the alarm is cleared and stays quiet while that fault
    lasts, and the answer is stored as a label (ok) the diagnose heads learn from."""
    _answer(config, device, quantity, "is fine", timeout)


def _open_store(config: str) -> tuple[Config, Store]:
    from agent.storage import Store

    cfg = load(config)
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
    _, store = _open_store(config)
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

    cfg, store = _open_store(config)
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
    _, store = _open_store(config)
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
