"""Can the agent reach and log in to its broker? One short, clean connection (no session left
behind, no subscription, no will) for ``edge-agent doctor``."""

from __future__ import annotations

import os
import ssl
import threading

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import MqttSection
from agent.mqtt.client import credentials


def probe(cfg: MqttSection, timeout: float = 5.0) -> str | None:
    """None when the broker accepted a connection with the configured credentials and TLS;
    else one sentence saying what went wrong."""
    v5 = cfg.protocol == "5"
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"edge-agent-doctor-{os.getpid()}",
        protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        clean_session=None if v5 else True,
    )
    done = threading.Event()
    outcome: list[str | None] = []

    def on_connect(client: paho.Client, userdata: object, flags: object, reason: object,
                   props: object = None) -> None:
        failed = getattr(reason, "is_failure", False)
        outcome.append(f"the broker refused the connection: {reason}" if failed else None)
        done.set()

    client.on_connect = on_connect
    try:
        credentials(client, cfg)
        client.connect(cfg.host, cfg.port, keepalive=10)
    except (OSError, ssl.SSLError, ValueError) as exc:
        return f"cannot connect to {cfg.host}:{cfg.port}: {exc}"
    client.loop_start()
    try:
        if not done.wait(timeout):
            return f"no answer from {cfg.host}:{cfg.port} within {timeout:.0f}s"
        return outcome[0]
    finally:
        client.disconnect()
        client.loop_stop()
