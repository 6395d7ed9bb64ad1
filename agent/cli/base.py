"""What every command shares: the `edge-agent` click group, exit codes, logging, config loading."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from agent import __version__
from agent.config import Config, load_config
from agent.errors import ConfigError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
CONFIG_HELP = "The agent's YAML configuration file."
ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLE_HOME = ROOT / "config" / "home.example.yaml"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edge-agent")
def cli() -> None:
    """edge-agent: clean sensor readings from MQTT, keep them in SQLite, decide, act."""


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def load(path: str) -> Config:
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


def fail(command: str, message: object, code: int = EXIT_FAILURE) -> SystemExit:
    """Print ``command: message`` on stderr; the SystemExit to raise with ``code``."""
    click.echo(f"{command}: {message}", err=True)
    return SystemExit(code)
