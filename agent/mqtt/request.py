"""Ask an agent something on its intents topic (SPEC 7) and wait for its reply: one short, clean
connection, for terminal commands such as ``edge-agent health confirm``."""

from __future__ import annotations

import json
import os
import ssl
import threading
import uuid
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import MqttSection
from agent.errors import BrokerError
from agent.mqtt.client import credentials


def ask(cfg: MqttSection, topic: str, text: str, timeout: float = 10.0) -> dict[str, Any]:
    """Publish ``{"id", "text"}`` on ``topic`` and return the reply on ``topic/reply`` that
    carries the same id."""
    v5 = cfg.protocol == "5"
    request_id = f"cli-{uuid.uuid4().hex[:12]}"
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"edge-agent-ask-{os.getpid()}",
                         protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
                         clean_session=None if v5 else True)
    reply: dict[str, Any] = {}
    subscribed, answered = threading.Event(), threading.Event()

    def on_connect(client: paho.Client, *args: object) -> None:
        client.subscribe(f"{topic}/reply", qos=1)

    def on_message(client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        try:
            data = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(data, dict) and data.get("id") == request_id:
            reply.update(data)
            answered.set()

    client.on_connect, client.on_message = on_connect, on_message
    client.on_subscribe = lambda *args: subscribed.set()
    try:
        credentials(client, cfg)
        client.connect(cfg.host, cfg.port, keepalive=10)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise BrokerError(f"cannot connect to {cfg.host}:{cfg.port}: {exc}") from None
    client.loop_start()
    try:
        if not subscribed.wait(timeout):
            raise BrokerError(f"no answer from {cfg.host}:{cfg.port} within {timeout:.0f}s")
        client.publish(topic, json.dumps({"id": request_id, "text": text}), qos=1)
        if not answered.wait(timeout):
            raise BrokerError(f"the agent did not answer on {topic}/reply within {timeout:.0f}s")
        return reply
    finally:
        client.disconnect()
        client.loop_stop()
