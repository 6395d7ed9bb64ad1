"""`edge-agent config`: the configuration file's JSON Schema, for editors and validators."""

from __future__ import annotations

import json
from typing import Any

import click

from agent.cli.base import cli

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
TITLE = "edge-agent configuration (agent.yaml)"
_UNITS = (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0), ("ms", 0.001))


def config_schema() -> dict[str, Any]:
    """The JSON Schema of agent.yaml, made from the pydantic models (so it cannot drift), with
    durations' defaults written as the file writes them ("30s", not 30.0)."""
    from agent.config import DURATION_SCHEMA, Config

    schema = Config.model_json_schema()
    _write_durations(schema, schema, DURATION_SCHEMA["pattern"])
    schema.pop("title", None)
    return {"$schema": SCHEMA_DIALECT, "title": TITLE, **schema}


def as_duration(seconds: float) -> str:
    """``30.0`` -> ``"30s"``, ``604800.0`` -> ``"7d"``, ``0.2`` -> ``"200ms"``."""
    for unit, size in _UNITS:
        count = seconds / size
        if count >= 1 and abs(count - round(count)) < 1e-9:
            return f"{round(count)}{unit}"
    return f"{seconds:g}s"


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return root["$defs"][ref.rsplit("/", 1)[-1]] if isinstance(ref, str) else schema


def _as_written(value: Any, schema: dict[str, Any], root: dict[str, Any], pattern: str) -> Any:
    """``value`` (a default, as the model holds it) as the YAML file writes it."""
    schema = _resolve(schema, root)
    options = [_resolve(s, root) for s in schema.get("anyOf", [])] or [schema]
    for option in options:
        if option.get("pattern") == pattern and isinstance(value, (int, float)):
            return as_duration(float(value))
        if isinstance(value, dict) and "properties" in option:
            props = option["properties"]
            return {k: _as_written(v, props[k], root, pattern) if k in props else v
                    for k, v in value.items()}
        if isinstance(value, list) and isinstance(option.get("items"), dict):
            return [_as_written(v, option["items"], root, pattern) for v in value]
    return value


def _write_durations(node: Any, root: dict[str, Any], pattern: str) -> None:
    """Rewrite, in place, every default under ``node`` as the file writes it."""
    if isinstance(node, list):
        for item in node:
            _write_durations(item, root, pattern)
        return
    if not isinstance(node, dict):
        return
    if "default" in node:
        node["default"] = _as_written(node["default"], node, root, pattern)
    for key, value in node.items():
        if key != "default":
            _write_durations(value, root, pattern)


@cli.group()
def config() -> None:
    """Tools for the configuration file (validate one with check-config)."""


@config.command("schema")
def config_schema_command() -> None:
    """Print the JSON Schema of the configuration file, so an editor with a YAML language
    server validates and completes agent.yaml."""
    click.echo(json.dumps(config_schema(), indent=2, ensure_ascii=False))
