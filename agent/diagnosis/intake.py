"""What the diagnosis reads off the wire: a reading's value in its canonical unit (in range or
not), an actuator state, a command; anything malformed gives None and is never raised."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from agent.config import SensorConfig
from agent.errors import RejectedReading
from agent.numbers import finite_number
from agent.pipeline.parse import Reading, parse_reading, split_topic
from agent.units import convert


class Measured(NamedTuple):
    device: str
    quantity: str
    ts: float
    value: float  # in the quantity's canonical unit
    in_range: bool


def measured(
    topic: str, payload: bytes, recv_ts: float, *, prefix: str, max_bytes: int,
    sensors: Mapping[str, SensorConfig],
) -> Measured | tuple[str, str] | None:
    """The reading; ``(device, quantity)`` when the message is unusable but its topic names a
    series (the device is not silent); None for a topic that is no series at all."""
    try:
        reading = parse_reading(topic, payload, recv_ts, prefix=prefix, max_bytes=max_bytes)
    except RejectedReading:
        try:
            return split_topic(topic, prefix)
        except RejectedReading:
            return None
    return canonical(reading, sensors)


def canonical(
    reading: Reading, sensors: Mapping[str, SensorConfig]
) -> Measured | tuple[str, str]:
    """A parsed reading in its quantity's canonical unit, in range or not; ``(device,
    quantity)`` when its unit cannot be converted."""
    sensor = sensors.get(reading.quantity)
    value = reading.value
    try:
        if sensor is not None and sensor.unit is not None and reading.unit is not None:
            value = convert(value, reading.unit, sensor.unit)
    except RejectedReading:
        return reading.device, reading.quantity
    bounds = None if sensor is None else sensor.range
    inside = bounds is None or bounds[0] <= value <= bounds[1]
    return Measured(reading.device, reading.quantity, reading.ts, value, inside)


def state_of(payload: bytes) -> tuple[str, float | None, object] | None:
    """A SPEC 5 state as (action, value, command_id)."""
    try:
        data: Any = json.loads(payload)
        action = data["action"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(action, str):
        return None
    command_id = data.get("command_id")
    cid = command_id if isinstance(command_id, str) else None
    return action, finite_number(data.get("value")), cid
