"""`edge-agent config schema`: the JSON Schema an editor uses accepts the example configs and
refuses what the agent refuses (unknown keys, a duration without its unit). The YAML is read
as the agent and a YAML language server read it (1.2: `on` and `off` are words)."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from click.testing import CliRunner

from agent.cli import cli
from agent.cli.config import as_duration
from agent.config import read_yaml
from tests.helpers import ROOT

EXAMPLES = [ROOT / "config" / "agent.example.yaml", ROOT / "config" / "home.example.yaml"]
TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,),
    "integer": (int,), "number": (int, float), "null": (type(None),),
}


def printed_schema() -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["config", "schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    assert isinstance(schema, dict)
    return schema


def errors(
    value: object, schema: dict[str, Any], root: dict[str, Any], path: str = ""
) -> list[str]:
    """The subset of JSON Schema that pydantic writes: $ref, anyOf, type, enum, const,
    properties, additionalProperties, required, items, pattern, minimum/maximum."""
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
    if "anyOf" in schema:
        options = [errors(value, s, root, path) for s in schema["anyOf"]]
        return [] if any(not o for o in options) else min(options, key=len)
    where = path or "(top)"
    kinds = schema.get("type")
    if kinds is not None:
        allowed = tuple(t for k in ([kinds] if isinstance(kinds, str) else kinds) for t in TYPES[k])
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            return [f"{where}: {value!r} is not {kinds}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} not one of {schema['enum']}"]
    if "const" in schema and value != schema["const"]:
        return [f"{where}: {value!r} is not {schema['const']!r}"]
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        return [f"{where}: {value!r} does not match {schema['pattern']}"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return [f"{where}: {value} < {schema['minimum']}"]
        if "maximum" in schema and value > schema["maximum"]:
            return [f"{where}: {value} > {schema['maximum']}"]
    found: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        found += [f"{where}: {key} is required" for key in schema.get("required", [])
                  if key not in value]
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if key in properties:
                found += errors(item, properties[key], root, inner)
            elif extra is False:
                found.append(f"{inner}: unknown key")
            elif isinstance(extra, dict):
                found += errors(item, extra, root, inner)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            found += errors(item, schema["items"], root, f"{path}[{i}]")
    return found


def test_the_schema_names_its_dialect_and_title() -> None:
    schema = printed_schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert "edge-agent" in schema["title"]
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert {"agent", "mqtt", "policies", "security"} <= set(schema["properties"])


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_the_example_configs_validate(example: Any) -> None:
    schema = printed_schema()
    assert errors(read_yaml(example.read_text()), schema, schema) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda c: c.update(colour="red"), "colour: unknown key"),
        (lambda c: c["agent"].update(colour="red"), "agent.colour: unknown key"),
        (lambda c: c["agent"].update(status_interval=30), "agent.status_interval: 30 is not"),
        (lambda c: c["agent"].update(status_interval="30 seconds"), "does not match"),
        (lambda c: c["mqtt"].update(port="1883x"), "mqtt.port"),
    ],
    ids=["top key", "nested key", "duration number", "duration unit", "port"],
)
def test_what_the_agent_refuses_the_schema_refuses(change: Any, expected: str) -> None:
    schema = printed_schema()
    config = copy.deepcopy(read_yaml(EXAMPLES[0].read_text()))
    change(config)
    found = errors(config, schema, schema)
    assert any(expected in e for e in found), found


def test_every_default_is_valid_as_written() -> None:
    """A default an editor offers must be a value the file may hold (durations as "30s")."""
    schema = printed_schema()
    checked = 0
    for model in [schema, *schema["$defs"].values()]:
        for key, prop in model.get("properties", {}).items():
            if "default" in prop:
                checked += 1
                assert errors(prop["default"], prop, schema, key) == []
    assert checked > 50


def test_durations_are_written_with_the_largest_whole_unit() -> None:
    assert [as_duration(s) for s in (30.0, 60.0, 604800.0, 0.2, 90.0, 1.5)] == [
        "30s", "1m", "7d", "200ms", "90s", "1500ms"]
