"""The layer order of the agent's packages, written once: a module imports only its own
package and packages of lower layers (tests/test_layers.py reads every import to check)."""

from __future__ import annotations

# Highest first. Packages in one layer are siblings: neither imports the other.
# The CLI is the one entry point that reaches the benchmarks and the demo; nothing imports those.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("agent.__main__",),
    ("agent.cli",),
    ("agent.bench", "agent.demo"),
    ("agent.web",),  # the dashboard: started beside the agent by run, demo and bench
    ("agent.service", "agent.tune"),
    ("agent.peers", "agent.storage", "agent.diagnosis"),
    ("agent.policy", "agent.pipeline", "agent.mqtt", "agent.nlu", "agent.broker"),
    ("agent.inference", "agent.config"),
    ("agent.units", "agent.numbers", "agent.actionvalues", "agent.words", "agent.durable"),
    ("agent.errors", "agent.layers", "agent"),
)

# The simulated firmware stands beside the agent and shares only the wire contract with it:
# the signed-command format (one implementation, so both ends compute the same bytes), the
# YAML validation that reports errors with their paths, and the error types.
FIRMWARE = "firmware_sim"
FIRMWARE_MAY_IMPORT: tuple[str, ...] = ("agent.policy.signing", "agent.config", "agent.errors")
# ...and only the harnesses that run it against a real agent import it.
FIRMWARE_USED_BY: tuple[str, ...] = ("agent.cli", "agent.bench", "agent.demo")


def package_of(module: str) -> str | None:
    """The layered package a dotted module name belongs to (the longest match), or None."""
    best: str | None = None
    for layer in LAYERS:
        for package in layer:
            # the root package `agent` (its __init__) is itself only, not everything under it
            inside = module == package or ("." in package and module.startswith(package + "."))
            if inside and (best is None or len(package) > len(best)):
                best = package
    return best


def layer_of(package: str) -> int:
    """The index of a package's layer, 0 for the highest."""
    for index, layer in enumerate(LAYERS):
        if package in layer:
            return index
    raise KeyError(package)


def may_import(importer: str, imported: str) -> bool:
    """True when module `importer` may import module `imported` under the layer order."""
    if importer == FIRMWARE or importer.startswith(FIRMWARE + "."):
        if imported == FIRMWARE or imported.startswith(FIRMWARE + "."):
            return True
        return any(imported == ok or imported.startswith(ok + ".") for ok in FIRMWARE_MAY_IMPORT)
    source, target = package_of(importer), package_of(imported)
    if imported == FIRMWARE or imported.startswith(FIRMWARE + "."):
        return source in FIRMWARE_USED_BY
    if source is None or target is None:
        return target is None
    if source == target:
        return True
    return layer_of(target) > layer_of(source)
