"""The ``firmware-sim`` command line."""

from __future__ import annotations

import sys

import click

from firmware_sim.load import run_load


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


def main() -> int:
    try:
        cli.main(prog_name="firmware-sim", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
