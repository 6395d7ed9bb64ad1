"""MkDocs hook (mkdocs.yml ``hooks:``): adds the generated reference pages to every build.

``reference/configuration.md`` comes from the pydantic models of agent/config.py and
``reference/cli.md`` from the click commands; both are made in memory at build time and never
written to the source tree. The checkout's own ``agent`` package is imported, not an installed
copy.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(ROOT))

from mkdocs.structure.files import File, Files  # noqa: E402

from docs.gen import cli_reference, config_reference  # noqa: E402

CONFIG_PAGE = "reference/configuration.md"
CLI_PAGE = "reference/cli.md"


def config_page() -> str:
    from agent.config import Config

    here = Path(__file__).parent
    return config_reference.render(
        Config, ROOT / "config" / "agent.example.yaml",
        config_reference.read_descriptions(here / "descriptions.txt"))


def cli_page() -> str:
    from agent.cli import cli
    from firmware_sim.cli import cli as sim_cli

    return cli_reference.render([("edge-agent", cli), ("firmware-sim", sim_cli)])


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, CONFIG_PAGE, content=config_page()))
    files.append(File.generated(config, CLI_PAGE, content=cli_page()))
    return files
