"""How large a message the agent takes, so that it can tell the broker (MQTT 5 Maximum Packet
Size) and the broker drops anything larger instead of sending it.

What arrives legitimately: sensor readings (``mqtt.max_payload_bytes``), actuator states,
intents and peer messages (small JSON), federated-learning rounds and updates (a policy head
and its standardisation, up to a few MB for a large embedding), and model-update chunks (up
to :data:`agent.service.manifest.MAX_CHUNK`; a signed manifest is smaller).
``mqtt.max_packet_bytes`` overrides the derived figure, e.g. to announce less when model
updates are pushed in small chunks.
"""

from __future__ import annotations

from agent.config import Config
from agent.mqtt.client import packet_limit
from agent.service import manifest

PEER_MESSAGE = 64 << 10  # status, results, group outcomes: a few KB of JSON
FEDERATION_MESSAGE = 4 << 20  # a round: head weights and standardisation of up to ~8k dims
PROBE_AFTER = 10.0  # the least time a probe of the inbound path is given to come back


def largest_payload(config: Config, *, model_updates: bool) -> int:
    """The largest payload the agent accepts with this configuration."""
    sizes = [config.mqtt.max_payload_bytes]
    if any(p.peers is not None for p in config.policies):
        sizes.append(PEER_MESSAGE)
    if any(p.peers is not None and p.peers.federated is not None for p in config.policies):
        sizes.append(FEDERATION_MESSAGE)
    if model_updates:
        sizes.append(manifest.MAX_CHUNK)
    return max(sizes)


def max_packet(config: Config, *, model_updates: bool) -> int:
    """The Maximum Packet Size the agent announces on connect."""
    return packet_limit(config.mqtt, largest_payload(config, model_updates=model_updates))


def describe(config: Config, max_packet: int | None) -> str:
    """The limits in force, for the log at start (and what to set to tighten them)."""
    m, s = config.mqtt, config.sensors
    packet = "not announced (MQTT 3.1.1)" if m.protocol != "5" else f"{max_packet} bytes"
    strict = ("only the quantities under sensors:" if s.strict else
              "any quantity name (set sensors.strict: true to take only those under sensors:)")
    return (f"limits: MQTT 5 Maximum Packet Size {packet}, receive maximum {m.receive_maximum}, "
            f"ingest queue {m.queue_limit}; series: {s.max_series_per_device} per device, "
            f"{s.max_series} in all, {strict}")
