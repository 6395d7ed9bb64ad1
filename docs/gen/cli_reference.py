"""The command-line reference page, generated from the click commands at build time.

Every command and group of ``edge-agent`` and ``firmware-sim``, each with the text its
``--help`` prints, so the page cannot drift from the code.
"""

from __future__ import annotations

from collections.abc import Iterator

import click

WIDTH = 80  # columns the help text is wrapped to (what --help prints in a terminal)


def walk(group: click.Command, prog: str,
         parent: click.Context | None = None) -> Iterator[tuple[str, str]]:
    """(``prog sub command``, its ``--help`` text) for a command and everything under it."""
    # make_context, not Context(): it applies the command's context_settings (-h, ...)
    ctx = group.make_context(prog.rsplit(" ", 1)[-1], [], parent=parent,
                             resilient_parsing=True, terminal_width=WIDTH,
                             max_content_width=WIDTH)
    yield prog, group.get_help(ctx)
    if isinstance(group, click.Group):
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            if cmd is not None:
                yield from walk(cmd, f"{prog} {name}", ctx)


def render(programs: list[tuple[str, click.Command]]) -> str:
    out = [
        "# Command-line reference",
        "",
        "<!-- generated from the click commands by docs/gen/cli_reference.py at every build: "
        "do not edit -->",
        "",
        "Every command with what its `--help` prints. Exit codes (SPEC 8): 0 ok, 1 runtime "
        "failure, 2 bad usage or configuration.",
    ]
    for prog, group in programs:
        for name, text in walk(group, prog):
            out += ["", f"## `{name}`", "", "```text", text.rstrip(), "```"]
    return "\n".join(out) + "\n"
