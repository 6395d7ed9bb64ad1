"""The documentation: the site builds strict, and its generated references hold every
configuration key and every command's --help; the README stays a few screens long."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from agent.cli import cli
from agent.config import Config
from firmware_sim.cli import cli as sim_cli
from tests.helpers import ROOT


def build(site: Path, config: Path = ROOT / "mkdocs.yml") -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict``, as scripts/test runs it (mkdocs is in the dev extra: a
    missing mkdocs fails here rather than skipping)."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config),
         "-d", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = build(out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def text_of(page: Path) -> str:
    """The words of a built page: tags dropped, entities decoded, whitespace collapsed."""
    raw = page.read_text(encoding="utf-8")
    raw = re.sub(r"<(script|style)\b.*?</\1>", " ", raw, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", raw)).split())


def nav_pages(nav: Any) -> Iterator[str]:
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list):
            yield from nav_pages(value)
        else:
            yield value


def mkdocs_yml() -> dict[str, Any]:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    data: dict[str, Any] = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=Loader)
    return data


def test_every_page_in_the_nav_is_built(site: Path) -> None:
    pages = list(nav_pages(mkdocs_yml()["nav"]))
    assert "reference/configuration.md" in pages and "reference/cli.md" in pages
    for page in pages:
        folder = "" if page == "index.md" else page.removesuffix(".md")
        built = site / folder / "index.html"
        assert built.is_file(), f"{page} was not built"
    # SECURITY.md is included, not copied by hand
    security = text_of(site / "security" / "index.html")
    first = (ROOT / "SECURITY.md").read_text().splitlines()[2]
    assert " ".join(first.split()) in security


def test_a_page_missing_from_the_nav_fails_the_build(tmp_path: Path) -> None:
    """The strict build is really strict: the same site with one page left out of the nav."""
    config = mkdocs_yml()
    config["nav"] = [item for item in config["nav"]
                     if not (isinstance(item, dict) and item.get("Benchmarks"))]
    config["docs_dir"] = str(ROOT / "docs")
    config["hooks"] = [str(ROOT / "docs" / "gen" / "hooks.py")]
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    result = build(tmp_path / "site", tmp_path / "mkdocs.yml")
    assert result.returncode != 0
    assert "benchmarks.md" in result.stdout + result.stderr


def schema_paths(schema: dict[str, Any]) -> list[str]:
    """Every key path of the configuration, read from its JSON Schema (not from the generator
    of the page): ``[]`` for an item of a list, ``<quantity>`` for a key under sensors:."""
    defs = schema.get("$defs", {})

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        return node

    def sections(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
        node = resolve(node)
        for branch in node.get("anyOf", []):
            yield from sections(branch)
        if node.get("type") == "array" and isinstance(node.get("items"), dict):
            item = resolve(node["items"])
            if "properties" in item:
                yield {"list": True, **item}
        if "properties" in node:
            yield node

    out: list[str] = []

    def walk(node: dict[str, Any], prefix: str) -> None:
        for section in sections(node):
            base = prefix + "[]" if section.get("list") else prefix
            for name, sub in section["properties"].items():
                path = f"{base}.{name}" if base else name
                out.append(path)
                walk(sub, path)
            extra = section.get("additionalProperties")
            if isinstance(extra, dict) and "properties" in resolve(extra):
                path = f"{base}.<quantity>"
                out.append(path)
                walk(extra, path)
        for branch in [node, *node.get("anyOf", [])]:  # a mapping of names to sections
            entry = resolve(branch).get("additionalProperties")
            if "properties" not in resolve(branch) and isinstance(entry, dict) \
                    and "properties" in resolve(entry):
                out.append(f"{prefix}.<name>")
                walk(entry, f"{prefix}.<name>")

    walk(schema, "")
    return out


def reference_rows(site: Path) -> dict[str, list[str]]:
    raw = (site / "reference" / "configuration" / "index.html").read_text(encoding="utf-8")
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", raw, flags=re.S):
        cells = [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", c)).split())
                 for c in re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)]
        if cells:
            rows[cells[0]] = cells[1:]
    return rows


def test_every_configuration_key_is_in_the_reference(site: Path) -> None:
    paths = schema_paths(Config.model_json_schema())
    assert {"agent.id", "mqtt.tls.ca_file", "sensors.<quantity>.outlier.window",
            "policies[].actuators[].value.min", "interlocks[].when"} <= set(paths)
    rows = reference_rows(site)
    for path in paths:
        assert path in rows, f"{path} is not in the configuration reference"
        kind, _default, description = rows[path]
        assert kind, f"{path}: no type"
        assert description, (f"{path}: no description; add a comment beside it in "
                              f"config/agent.example.yaml")
    # the values are the models' own, in the file's words
    assert rows["agent.status_interval"][:2] == ["duration", "30s"]
    assert rows["storage.retention.max_age"][:2] == ["duration, or null", "30d"]
    assert rows["mqtt.port"][1] == "1883" and "≤ 65535" in rows["mqtt.port"][2]
    assert rows["policies[].actuators[].actions"][1] == "required"
    assert rows["agent.id"][1] == "the host name"
    assert "Hampel" in rows["sensors.<quantity>.outlier"][2]  # a comment of the example file


def commands(group: click.Group, prefix: str) -> Iterator[tuple[str, click.Command]]:
    yield prefix, group
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from commands(cmd, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", cmd


@pytest.mark.parametrize("group", [cli, sim_cli], ids=["edge-agent", "firmware-sim"])
def test_every_command_help_is_in_the_cli_reference(site: Path, group: click.Group) -> None:
    page = text_of(site / "reference" / "cli" / "index.html")
    prog = "edge-agent" if group is cli else "firmware-sim"
    runner = CliRunner()
    found = list(commands(group, prog))
    assert len(found) >= 3
    for name, _cmd in found:
        result = runner.invoke(group, [*name.split()[1:], "--help"], prog_name=prog,
                               terminal_width=80)
        assert result.exit_code == 0, result.output
        assert result.output.startswith(f"Usage: {name} ")
        assert " ".join(result.output.split()) in page, f"{name} --help is not in the reference"


def test_the_readme_is_a_few_screens_with_both_set_up_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 200
    block = re.search(r"```sh\n(.*?)```", readme, flags=re.S)
    assert block is not None
    assert "./scripts/demo " in block.group(1) and "./scripts/test " in block.group(1)
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme):
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"
