"""The ``firmware-sim`` command line."""

from __future__ import annotations

import secrets
import sys
import time
from pathlib import Path

import click

from agent.errors import AgentError, BrokerError
from agent.policy.signing import load_key
from firmware_sim.house import House
from firmware_sim.load import run_load
from firmware_sim.report import progress_line, summary_lines
from firmware_sim.scenario import ScenarioError, bundled_scenarios, scenario_from


def _broker(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Simulated sensor and actuator firmware for edge-agent, against any MQTT broker."""


@cli.command()
@click.option("--broker", default="127.0.0.1:1883", show_default=True, help="HOST:PORT.")
@click.option("--devices", default=10, show_default=True, help="Simulated sensor devices.")
@click.option(
    "--rate",
    default=100.0,
    show_default=True,
    help="Readings per second in total (0: as fast as possible).",
)
@click.option("--duration", default=10.0, show_default=True, help="Seconds to run.")
@click.option("--count", type=int, help="Stop after this many readings instead.")
@click.option("--prefix", default="edge", show_default=True, help="Topic prefix.")
def load(
    broker: str, devices: int, rate: float, duration: float, count: int | None, prefix: str
) -> None:
    """Publish temperature readings at QoS 1 from DEVICES devices; print the rate achieved."""
    host, port = _broker(broker)
    if devices < 1:
        raise click.BadParameter("must be at least 1", param_hint="--devices")

    def progress(sent: int, seconds: float) -> None:
        click.echo(f"  {sent} sent in {seconds:.1f}s ({sent / seconds:.0f}/s)", err=True)

    try:
        result = run_load(
            host,
            port,
            devices=devices,
            rate=rate,
            duration=None if count else duration,
            count=count,
            prefix=prefix,
            progress=progress,
        )
    except OSError as exc:
        click.echo(f"firmware-sim: cannot reach broker {broker}: {exc}", err=True)
        sys.exit(1)
    click.echo(
        f"sent {result.sent} readings from {devices} devices in {result.seconds:.2f}s: "
        f"{result.rate:.0f} readings/s, {result.acknowledged} acknowledged by the broker"
    )


def _key(path: Path | None) -> bytes:
    if path is None:
        click.echo(
            "firmware-sim: no --key-file: using a random key, so every command will be "
            "rejected as a bad signature (give the agents' security.command_key_file)",
            err=True,
        )
        return secrets.token_hex(32).encode()
    try:
        return load_key(path)
    except AgentError as exc:
        raise click.BadParameter(str(exc), param_hint="--key-file") from None


BUNDLED = ", ".join(p.stem for p in bundled_scenarios())


@cli.command()
@click.option(
    "--scenario",
    "-s",
    required=True,
    help=f"Scenario YAML file, or the name of a bundled one ({BUNDLED}).",
)
@click.option("--broker", default="127.0.0.1:1883", show_default=True, help="HOST:PORT.")
@click.option(
    "--speed",
    type=float,
    default=60.0,
    show_default=True,
    help="Simulated seconds per real second (60: a simulated minute each second).",
)
@click.option(
    "--duration",
    type=float,
    help="Real seconds to run (default: the scenario's duration at this speed).",
)
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The shared command key file (the agents' security.command_key_file).",
)
@click.option("--prefix", default="edge", show_default=True, help="Topic prefix.")
@click.option("--seed", type=int, help="Override the scenario's random seed.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the actuators keep their nonce memory across restarts (default: none; they "
    "then refuse commands made before they started).",
)
@click.option(
    "--progress",
    "progress_every",
    type=float,
    default=5.0,
    show_default=True,
    help="Real seconds between progress lines.",
)
def run(
    scenario: str,
    broker: str,
    speed: float,
    duration: float | None,
    key_file: Path | None,
    prefix: str,
    seed: int | None,
    state_dir: Path | None,
    progress_every: float,
) -> None:
    """Simulate a home from a scenario: rooms, sensors and signed actuators on the broker.

    Sensors publish readings (SPEC 1) with the scenario's faults; actuators accept only signed,
    fresh, unseen commands (SPEC 4), change the rooms and publish their state (SPEC 5).
    Runs until the scenario's duration, --duration or Ctrl-C, then prints a summary.
    """
    host, port = _broker(broker)
    if not speed > 0:
        raise click.BadParameter("must be greater than 0", param_hint="--speed")
    try:
        parsed = scenario_from(scenario)
    except ScenarioError as exc:
        count = f"{len(exc.errors)} error" + ("s" if len(exc.errors) > 1 else "")
        click.echo(f"firmware-sim: invalid scenario {scenario} ({count})", err=True)
        for line in exc.errors:
            click.echo(f"  {line}", err=True)
        sys.exit(2)
    house = House(
        parsed,
        key=_key(key_file),
        broker_host=host,
        broker_port=port,
        prefix=prefix,
        speed=speed,
        seed=seed,
        state_dir=state_dir,
    )
    seconds = duration if duration is not None else parsed.duration / speed
    try:
        house.start()
    except BrokerError as exc:
        click.echo(f"firmware-sim: {exc}", err=True)
        sys.exit(1)
    click.echo(
        f"firmware-sim: {parsed.name} on {broker} at speed {speed:g} for {seconds:g}s "
        f"(seed {house.seed}); Ctrl-C stops",
        err=True,
    )
    started = time.monotonic()
    try:
        _watch(house, seconds, progress_every)
    except KeyboardInterrupt:
        click.echo("firmware-sim: interrupted", err=True)
    finally:
        house.stop()
    snap = house.snapshot()
    click.echo(
        f"ran {parsed.name} for {time.monotonic() - started:.1f}s at speed {speed:g}: "
        f"{snap.sim_time / 3600:.2f} h simulated, {snap.published} readings published, "
        f"{snap.accepted} commands accepted, {snap.rejected} rejected"
    )
    for line in summary_lines(snap):
        click.echo(line)
    if house.error is not None:
        click.echo(f"firmware-sim: the simulation failed: {house.error}", err=True)
        sys.exit(1)


def _watch(house: House, seconds: float, every: float) -> None:
    start = time.monotonic()
    next_line = start + every
    while house.error is None:
        now = time.monotonic()
        if now - start >= seconds:
            return
        if now >= next_line:
            click.echo(progress_line(house.snapshot(), house.in_outage()), err=True)
            next_line += every
        time.sleep(min(0.1, max(0.0, seconds - (now - start))))


def main() -> int:
    try:
        cli.main(prog_name="firmware-sim", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
