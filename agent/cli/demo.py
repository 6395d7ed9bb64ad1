"""`edge-agent demo`: a broker, a simulated home and the agent on this machine."""

from __future__ import annotations

from pathlib import Path

import click

from agent.cli.base import EXIT_FAILURE, EXIT_USAGE, cli, load, setup_logging
from agent.errors import AgentError, ConfigError


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
        load(config)  # exit 2 with every error before anything starts
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
