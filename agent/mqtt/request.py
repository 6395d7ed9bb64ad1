"""Ask an agent something on its intents topic (SPEC 7) and wait for its reply: one short, clean
connection, for terminal commands such as ``edge-agent health confirm``."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import paho.mqtt.client as paho

from agent.config import MqttSection
from agent.errors import BrokerError
from agent.mqtt.retained import short_session


def ask(cfg: MqttSection, topic: str, text: str, timeout: float = 10.0) -> dict[str, Any]:
    """Publish ``{"id", "text"}`` on ``topic`` and return the reply on ``topic/reply`` that
    carries the same id."""
    request_id = f"cli-{uuid.uuid4().hex[:12]}"
    reply: dict[str, Any] = {}
    answered = threading.Event()

    def on_message(msg: paho.MQTTMessage) -> None:
        try:
            data = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(data, dict) and data.get("id") == request_id:
            reply.update(data)
            answered.set()

    with short_session(cfg, "ask", f"{topic}/reply", on_message, timeout) as client:
        client.publish(topic, json.dumps({"id": request_id, "text": text}), qos=1)
        if not answered.wait(timeout):
            raise BrokerError(f"the agent did not answer on {topic}/reply within {timeout:.0f}s")
        return reply
