"""Layers point down only: every import in agent/ and firmware_sim/ (module level or inside a
function) is read with `ast` and checked against the one layer order in agent/layers.py."""

from __future__ import annotations

import ast
from pathlib import Path

from agent.layers import FIRMWARE, LAYERS, may_import, package_of
from tests.helpers import ROOT


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, dotted module) for every import in the file of ``module``, relative ones resolved."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found.append((node.lineno, target))
            if target == "agent":  # `from agent import service` imports the package agent.service
                found.extend((node.lineno, f"agent.{alias.name}") for alias in node.names)
    return found


def ours(name: str) -> bool:
    return name.split(".")[0] in ("agent", FIRMWARE)


def violations() -> list[str]:
    found = []
    for path in sorted([*ROOT.glob("agent/**/*.py"), *ROOT.glob(f"{FIRMWARE}/**/*.py")]):
        importer = module_name(path)
        for line, imported in imports_of(path, importer):
            if ours(imported) and not may_import(importer, imported):
                found.append(f"{path.relative_to(ROOT)}:{line}: {importer} imports {imported}")
    return found


def test_every_module_belongs_to_a_layer() -> None:
    unplaced = [module_name(p) for p in ROOT.glob("agent/**/*.py")
                if package_of(module_name(p)) is None]
    assert unplaced == []


def test_layers_point_down_only() -> None:
    assert violations() == []


def test_a_package_is_in_one_layer_only() -> None:
    packages = [package for layer in LAYERS for package in layer]
    assert len(packages) == len(set(packages))


def test_the_check_catches_an_upward_import() -> None:
    assert not may_import("agent.config", "agent.pipeline.units")
    assert not may_import("agent.tune.run", "agent.service.modelupdate")
    assert not may_import("agent.service.decisions", "agent.tune.run")
    assert not may_import("agent.nlu.pipeline", "agent.policy.intents")
    assert not may_import("agent.service.runtime", "agent.bench.decide")
    assert not may_import("agent.service.runtime", "firmware_sim.house")
    assert not may_import("firmware_sim.house", "agent.service.runtime")
    assert may_import("agent.service.runtime", "agent.storage")
    assert may_import("agent.cli", "agent.bench.decide")
    assert may_import("firmware_sim.actuators", "agent.policy.signing")


def test_function_level_and_relative_imports_are_read(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from agent import demo\n"
        "def f():\n"
        "    from agent.service.runtime import Agent\n"
        "    from . import sibling\n"
    )
    found = {name for _, name in imports_of(sample, "agent.config")}
    assert {"agent.demo", "agent.service.runtime", "agent.sibling"} <= found
