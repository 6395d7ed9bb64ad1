"""Read what a broker keeps retained under a topic filter: one short, clean connection (no
session left behind, no will), for terminal views such as ``edge-agent health``."""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import MqttSection
from agent.errors import BrokerError
from agent.mqtt.client import credentials


@contextmanager
def short_session(cfg: MqttSection, name: str, topic_filter: str,
                  on_message: Callable[[paho.MQTTMessage], None],
                  timeout: float) -> Iterator[paho.Client]:
    """A connected client subscribed to ``topic_filter`` (no session left behind, no will),
    each message to ``on_message``; disconnected when the block ends."""
    v5 = cfg.protocol == "5"
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"edge-agent-{name}-{os.getpid()}",
                         protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
                         clean_session=None if v5 else True)
    subscribed = threading.Event()

    def on_connect(client: paho.Client, *args: object) -> None:
        client.subscribe(topic_filter, qos=1)

    client.on_connect = on_connect
    client.on_subscribe = lambda *args: subscribed.set()
    client.on_message = lambda client, userdata, msg: on_message(msg)
    try:
        credentials(client, cfg)
        client.connect(cfg.host, cfg.port, keepalive=10)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise BrokerError(f"cannot connect to {cfg.host}:{cfg.port}: {exc}") from None
    client.loop_start()
    try:
        if not subscribed.wait(timeout):
            raise BrokerError(f"no answer from {cfg.host}:{cfg.port} within {timeout:.0f}s")
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def read_retained(cfg: MqttSection, topic_filter: str, settle: float = 0.5,
                  timeout: float = 5.0) -> dict[str, bytes]:
    """Every retained message under ``topic_filter``: topic -> payload. Retained messages
    arrive at once after the subscription; reading stops ``settle`` seconds after the last."""
    found: dict[str, bytes] = {}
    last = [time.monotonic()]

    def on_message(msg: paho.MQTTMessage) -> None:
        if msg.retain:
            found[msg.topic] = bytes(msg.payload)
            last[0] = time.monotonic()

    with short_session(cfg, "view", topic_filter, on_message, timeout):
        last[0] = time.monotonic()
        while time.monotonic() - last[0] < settle:
            time.sleep(0.05)
        return dict(found)
