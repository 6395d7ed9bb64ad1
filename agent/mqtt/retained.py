"""Read what a broker keeps retained under a topic filter: one short, clean connection (no
session left behind, no will), for terminal views such as ``edge-agent health``."""

from __future__ import annotations

import os
import ssl
import threading
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import MqttSection
from agent.errors import BrokerError
from agent.mqtt.client import credentials


def read_retained(cfg: MqttSection, topic_filter: str, settle: float = 0.5,
                  timeout: float = 5.0) -> dict[str, bytes]:
    """Every retained message under ``topic_filter``: topic -> payload. Retained messages
    arrive at once after the subscription; reading stops ``settle`` seconds after the last."""
    v5 = cfg.protocol == "5"
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"edge-agent-view-{os.getpid()}",
                         protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
                         clean_session=None if v5 else True)
    found: dict[str, bytes] = {}
    subscribed = threading.Event()
    last = [time.monotonic()]

    def on_connect(client: paho.Client, *args: object) -> None:
        client.subscribe(topic_filter, qos=1)

    def on_subscribe(*args: object) -> None:
        last[0] = time.monotonic()
        subscribed.set()

    def on_message(client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        if msg.retain:
            found[msg.topic] = bytes(msg.payload)
            last[0] = time.monotonic()

    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    try:
        credentials(client, cfg)
        client.connect(cfg.host, cfg.port, keepalive=10)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise BrokerError(f"cannot connect to {cfg.host}:{cfg.port}: {exc}") from None
    client.loop_start()
    try:
        if not subscribed.wait(timeout):
            raise BrokerError(f"no answer from {cfg.host}:{cfg.port} within {timeout:.0f}s")
        while time.monotonic() - last[0] < settle:
            time.sleep(0.05)
        return dict(found)
    finally:
        client.disconnect()
        client.loop_stop()
