"""Strict JSON for peer messages: UTF-8 objects with finite numbers, compact on the way out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NoReturn

from agent.errors import AgentError
from agent.numbers import finite_number


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number")


def load_object(payload: bytes | str, what: str) -> dict[str, Any]:
    """A JSON object from the wire; :class:`AgentError` with a one-line reason otherwise."""
    try:
        text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
        data = json.loads(text, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise AgentError(f"{what}: not UTF-8") from None
    except ValueError as exc:
        raise AgentError(f"{what}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise AgentError(f"{what}: must be a JSON object, got {type(data).__name__}")
    return data


def dumps(obj: Mapping[str, object]) -> bytes:
    """Compact UTF-8 JSON; refuses NaN and Infinity (ValueError) rather than sending them."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def number(data: Mapping[str, Any], key: str, what: str) -> float:
    """``data[key]`` as a finite float (booleans and huge integers are not numbers)."""
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AgentError(f"{what}: {key} must be a number, got {value!r}")
    out = finite_number(value)
    if out is None:
        raise AgentError(f"{what}: {key} must be a finite number, got {value!r}")
    return out


def optional_number(data: Mapping[str, Any], key: str, what: str) -> float | None:
    return None if data.get(key) is None else number(data, key, what)


def text(data: Mapping[str, Any], key: str, what: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise AgentError(f"{what}: {key} must be a non-empty string, got {value!r}")
    return value


def word(data: Mapping[str, Any], key: str, what: str) -> str:
    """A string usable as one MQTT topic level (an agent id, a policy or group name)."""
    value = text(data, key, what)
    if any(c in value for c in "/+#") or any(c.isspace() for c in value):
        raise AgentError(f"{what}: {key} must be one topic level, got {value!r}")
    return value


def integer(data: Mapping[str, Any], key: str, what: str, *, minimum: int = 0) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise AgentError(f"{what}: {key} must be an integer >= {minimum}, got {value!r}")
    return value
