"""Home Assistant MQTT discovery: the agent's cleaned sensors, its decisions, its connectivity.

One single-component discovery message per entity, on
``homeassistant/<component>/<node_id>/<object_id>/config`` (node_id: the agent), retained:

- a ``sensor`` per (device, quantity) the agent has stored, reading the cleaned value from
  ``{p}/agents/{agent}/clean/{device}/{quantity}`` (:func:`clean_topic`; an addition to the
  wire contract: ``{"value": 23.4, "ts": …, "unit": "C"}``, retained);
- an ``enum`` ``sensor`` per policy with its last action, read from the results topic
  (SPEC 6) with ``{{ value_json.action }}``;
- a ``binary_sensor`` (device class ``connectivity``) on the status topic (SPEC 3).

Every sensor is available exactly while the retained status says ``"state": "online"``
(the last will turns it offline). The connectivity sensor has no availability of its own: an
offline agent shows as disconnected, not as unknown. Home Assistant forgets discovered
entities when it restarts and then publishes ``online`` on ``homeassistant/status``;
:func:`should_announce` tells when to send everything again.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DISCOVERY_PREFIX = "homeassistant"
STATUS_TEMPLATE = "{{ value_json.state }}"
_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")

# the agent's canonical unit -> Home Assistant's spelling of it
HA_UNITS = {"C": "°C", "F": "°F"}
# quantity name -> (device class, the units Home Assistant accepts for it)
DEVICE_CLASSES: dict[str, tuple[str, frozenset[str]]] = {
    "temperature": ("temperature", frozenset({"°C", "°F", "K"})),
    "humidity": ("humidity", frozenset({"%"})),
    "co2": ("carbon_dioxide", frozenset({"ppm"})),
    "carbon_dioxide": ("carbon_dioxide", frozenset({"ppm"})),
    "pressure": ("pressure", frozenset({"Pa", "hPa", "kPa", "bar"})),
    "illuminance": ("illuminance", frozenset({"lx"})),
    "light": ("illuminance", frozenset({"lx"})),
    "power": ("power", frozenset({"mW", "W", "kW"})),
    "energy": ("energy", frozenset({"Wh", "kWh"})),
    "voltage": ("voltage", frozenset({"mV", "V"})),
    "current": ("current", frozenset({"mA", "A"})),
    "battery": ("battery", frozenset({"%"})),
    "moisture": ("moisture", frozenset({"%"})),
    "wind_speed": ("wind_speed", frozenset({"m/s", "km/h"})),
    "speed": ("speed", frozenset({"m/s", "km/h"})),
}
# an energy meter only grows; everything else is a measurement
STATE_CLASSES = {"energy": "total_increasing"}


@dataclass(frozen=True)
class Announcement:
    """What the agent announces; plain values so this module needs nothing of the agent."""

    prefix: str  # mqtt.prefix
    agent_id: str
    version: str
    series: Sequence[tuple[str, str]]  # (device, quantity) pairs the agent has readings of
    units: Mapping[str, str | None] = field(default_factory=dict)  # quantity -> canonical unit
    policies: Mapping[str, Sequence[str]] = field(default_factory=dict)  # name -> actions
    discovery_prefix: str = DISCOVERY_PREFIX

    @property
    def status_topic(self) -> str:
        return f"{self.prefix}/agents/{self.agent_id}/status"


def clean_topic(prefix: str, agent_id: str, device: str, quantity: str) -> str:
    """Where the agent publishes a series' cleaned value for dashboards."""
    return f"{prefix}/agents/{agent_id}/clean/{device}/{quantity}"


def clean_payload(value: float, ts: float, unit: str | None) -> bytes:
    return json.dumps({"value": value, "ts": ts, "unit": unit}, separators=(",", ":")).encode()


def should_announce(topic: str, payload: bytes, discovery_prefix: str = DISCOVERY_PREFIX) -> bool:
    """True for Home Assistant's birth message: it (re)started and needs the discovery."""
    return topic == f"{discovery_prefix}/status" and payload.strip() == b"online"


def discovery_messages(a: Announcement) -> list[tuple[str, bytes]]:
    """Every ``(topic, payload)`` to publish, retained, for Home Assistant to discover."""
    messages = [_connectivity(a)]
    messages += [_sensor(a, device, quantity) for device, quantity in a.series]
    messages += [_decision(a, name, actions) for name, actions in a.policies.items()]
    return [(topic, _dumps(payload)) for topic, payload in messages]


def removal_messages(topics: Sequence[str]) -> list[tuple[str, bytes]]:
    """Retained empty payloads that make Home Assistant drop these entities."""
    return [(topic, b"") for topic in topics]


def safe_id(text: str) -> str:
    """``text`` in the characters discovery ids allow; a short hash keeps changed ids apart."""
    cleaned = _ID_CHARS.sub("_", text)
    if cleaned == text:
        return text
    return f"{cleaned}_{hashlib.sha256(text.encode()).hexdigest()[:6]}"


def _dumps(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _node(a: Announcement) -> str:
    return safe_id(a.agent_id)


def _agent_device(a: Announcement) -> dict[str, Any]:
    return {
        "identifiers": [f"edge-agent_{_node(a)}"],
        "name": f"edge-agent {a.agent_id}",
        "manufacturer": "edge-agent",
        "model": "MQTT edge agent",
        "sw_version": a.version,
    }


def _common(a: Announcement, object_id: str, *, available: bool = True) -> dict[str, Any]:
    common: dict[str, Any] = {
        "unique_id": f"edge-agent_{_node(a)}_{object_id}",
        "origin": {"name": "edge-agent", "sw_version": a.version},
    }
    if available:
        common |= {
            "availability_topic": a.status_topic,
            "availability_template": STATUS_TEMPLATE,
            "payload_available": "online",
            "payload_not_available": "offline",
        }
    return common


def _topic(a: Announcement, component: str, object_id: str) -> str:
    return f"{a.discovery_prefix}/{component}/{_node(a)}/{object_id}/config"


def _connectivity(a: Announcement) -> tuple[str, dict[str, Any]]:
    payload = _common(a, "connectivity", available=False) | {
        "name": "Connectivity",
        "device": _agent_device(a),
        "device_class": "connectivity",
        "entity_category": "diagnostic",
        "state_topic": a.status_topic,
        "value_template": STATUS_TEMPLATE,
        "payload_on": "online",
        "payload_off": "offline",
    }
    return _topic(a, "binary_sensor", "connectivity"), payload


def _sensor(a: Announcement, device: str, quantity: str) -> tuple[str, dict[str, Any]]:
    object_id = safe_id(f"{device}_{quantity}")
    unit = a.units.get(quantity)
    ha_unit = None if unit is None else HA_UNITS.get(unit, unit)
    payload = _common(a, object_id) | {
        "name": quantity.replace("_", " ").capitalize(),
        "device": {
            "identifiers": [f"edge-agent_{_node(a)}_{safe_id(device)}"],
            "name": device,
            "via_device": f"edge-agent_{_node(a)}",
        },
        "state_topic": clean_topic(a.prefix, a.agent_id, device, quantity),
        "value_template": "{{ value_json.value }}",
        "state_class": STATE_CLASSES.get(quantity, "measurement"),
    }
    if ha_unit is not None:
        payload["unit_of_measurement"] = ha_unit
    known = DEVICE_CLASSES.get(quantity)
    if known is not None and ha_unit in known[1]:
        payload["device_class"] = known[0]
    return _topic(a, "sensor", object_id), payload


def _decision(a: Announcement, policy: str, actions: Sequence[str]) -> tuple[str, dict[str, Any]]:
    object_id = safe_id(f"policy_{policy}")
    results = f"{a.prefix}/agents/{a.agent_id}/results/{policy}"
    payload = _common(a, object_id) | {
        "name": f"{policy.replace('_', ' ').capitalize()} decision",
        "device": _agent_device(a),
        "icon": "mdi:robot",
        "device_class": "enum",
        "options": list(actions),
        "state_topic": results,
        "value_template": "{{ value_json.action }}",
        "json_attributes_topic": results,
        "json_attributes_template": (
            "{{ {'value': value_json.value, 'confidence': value_json.confidence, "
            "'scores': value_json.scores} | tojson }}"
        ),
    }
    return _topic(a, "sensor", object_id), payload
