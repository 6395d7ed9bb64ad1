"""Keys and the machine: keygen (command, update and identity keys) and doctor."""

from __future__ import annotations

from pathlib import Path

import click

from agent.cli.base import CONFIG_HELP, cli, load
from agent.config import Config
from agent.errors import AgentError


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

    cfg = Config() if config is None else load(config)
    raise SystemExit(
        run_doctor(cfg, click.echo, configured=config is not None, model_only=model_only,
                   timeout=timeout)
    )
