"""The ``edge-agent`` command line: parse, wire objects, map errors to exit codes.

One module per command group; each registers its commands on the group in
:mod:`agent.cli.base`. Exit codes (SPEC 8): 0 ok, 1 runtime failure, 2 bad usage or bad
configuration.
"""

from __future__ import annotations

import sys

from agent.cli import bench, config, demo, keys, model, running, service, tune
from agent.cli.base import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, cli

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "cli", "main"]
COMMAND_GROUPS = (bench, config, demo, keys, model, running, service, tune)  # registered on import


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="edge-agent", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
