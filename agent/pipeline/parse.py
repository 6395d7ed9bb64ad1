"""Turn one MQTT message into a :class:`Reading`, or reject it with a one-line reason (SPEC 1)."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from agent.errors import RejectedReading
from agent.numbers import finite_number

TS_MIN = 946_684_800.0  # 2000-01-01T00:00:00Z
TS_MAX_AHEAD = 86_400.0
SEQ_MAX = 2**63 - 1


class Reading(NamedTuple):  # a NamedTuple: built once per message, on the hot path
    """A syntactically valid reading, still in the unit it was sent in."""

    device: str
    quantity: str
    value: float
    unit: str | None
    ts: float  # the reading's time: its own ``ts`` or, without one, the receive time
    sent_ts: float | None
    seq: int | None
    recv_ts: float


def split_topic(topic: str, prefix: str) -> tuple[str, str]:
    """``{prefix}/sensors/{device}/{quantity}`` -> ``(device, quantity)``."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != prefix or parts[1] != "sensors" or not all(parts[2:]):
        raise RejectedReading(f"topic is not {prefix}/sensors/{{device}}/{{quantity}}", "topic")
    return parts[2], parts[3]


def _reject_constant(name: str) -> float:
    raise RejectedReading(f"{name} is not a valid number", "invalid")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise RejectedReading(f"duplicate key {key!r}", "malformed")
            seen.add(key)
    return out


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_unique_keys)


def _kind(value: object) -> str:
    names = {bool: "boolean", str: "string", list: "array", dict: "object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _number(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RejectedReading(f"{field} must be a number, got {_kind(value)}")
    number = finite_number(value)
    if number is None:
        shown = "an integer too large" if isinstance(value, int) else repr(value)
        raise RejectedReading(f"{field} must be finite, got {shown}")
    return number


def _seq(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RejectedReading(f"seq must be an integer, got {_kind(value)}")
    if not 0 <= value <= SEQ_MAX:
        raise RejectedReading(f"seq must be between 0 and 2^63-1, got {value}")
    return value


def _unit(value: object) -> str:
    if not isinstance(value, str):
        raise RejectedReading(f"unit must be a string, got {_kind(value)}")
    if not value or len(value) > 16:
        raise RejectedReading("unit must be 1 to 16 characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RejectedReading("unit must be valid Unicode (no lone surrogates)") from None
    return value


def decode(payload: bytes, max_bytes: int) -> Any:
    """Bytes -> a JSON value, enforcing size, UTF-8 and finite numbers."""
    if len(payload) > max_bytes:
        raise RejectedReading(
            f"payload of {len(payload)} bytes exceeds max_payload_bytes ({max_bytes})", "too-large"
        )
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise RejectedReading("payload is not valid UTF-8", "encoding") from None
    if not text.strip():
        raise RejectedReading("payload is empty", "malformed")
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise RejectedReading(
            f"payload is not a number or JSON: {exc.msg} at char {exc.pos}", "malformed"
        ) from None
    except RecursionError:
        raise RejectedReading("payload is nested too deeply", "malformed") from None


def parse_reading(
    topic: str, payload: bytes, recv_ts: float, *, prefix: str, max_bytes: int
) -> Reading:
    """Validate everything SPEC 1 asks of a sensor message; raise :class:`RejectedReading`."""
    device, quantity = split_topic(topic, prefix)
    data = decode(payload, max_bytes)
    if isinstance(data, dict):
        if "value" not in data:
            raise RejectedReading("missing 'value'")
        value = _number(data["value"], "value")
        sent_ts = None if data.get("ts") is None else _number(data["ts"], "ts")
        seq = None if data.get("seq") is None else _seq(data["seq"])
        unit = None if data.get("unit") is None else _unit(data["unit"])
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        value, sent_ts, seq, unit = _number(data, "value"), None, None, None
    else:
        raise RejectedReading(f"payload must be a number or a JSON object, got {_kind(data)}")
    if sent_ts is not None and not TS_MIN <= sent_ts <= recv_ts + TS_MAX_AHEAD:
        raise RejectedReading(
            f"ts {sent_ts} is not between 2000-01-01 and one day ahead", "timestamp"
        )
    return Reading(
        device,
        quantity,
        value,
        unit,
        sent_ts if sent_ts is not None else recv_ts,
        sent_ts,
        seq,
        recv_ts,
    )


def excerpt(payload: bytes, limit: int = 200) -> str:
    """The first ``limit`` bytes of a payload, escaped so that any bytes print."""
    return payload[:limit].decode("utf-8", "backslashreplace")
