"""`edge-agent model`: send a signed model update, quantize a GGUF file."""

from __future__ import annotations

from pathlib import Path

import click

from agent.cli.base import CONFIG_HELP, cli, load, setup_logging
from agent.errors import AgentError


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

    cfg = load(config)

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
