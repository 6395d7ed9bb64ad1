"""`edge-agent service`: install or remove the systemd unit."""

from __future__ import annotations

from pathlib import Path

import click

from agent.cli.base import CONFIG_HELP, cli, load
from agent.errors import AgentError


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

    load(config)
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
