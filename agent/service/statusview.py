"""``edge-agent status``: this agent and its peers, from the retained status topics (SPEC 3)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from agent.config import Config
from agent.errors import AgentError
from agent.mqtt import Message, MqttClient


def collect(config: Config, wait: float) -> dict[str, dict[str, Any]]:
    """Every retained status under ``{prefix}/agents/+/status``, by agent id."""
    found: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    prefix = config.mqtt.prefix

    def on_message(msg: Message) -> None:
        parts = msg.topic.split("/")
        try:
            body = json.loads(msg.payload) if msg.payload else None
        except ValueError:
            return
        if len(parts) == 4 and isinstance(body, dict):
            with lock:
                found[parts[2]] = body

    mqtt = config.mqtt.model_copy(
        update={"subscriptions": [f"{prefix}/agents/+/status"], "session_expiry": 1.0}
    )
    client = MqttClient(
        mqtt,
        f"edge-agent-status-{int(time.time() * 1000)}",
        will=None,
        on_message=on_message,
        manual_ack=False,
    )
    client.start()
    try:
        if not client.wait_connected(max(5.0, wait)):
            raise AgentError(client.last_error or f"cannot reach {mqtt.host}:{mqtt.port}")
        time.sleep(wait)
    finally:
        client.stop()
    return found


def render(statuses: dict[str, dict[str, Any]], own: str) -> list[str]:
    if not statuses:
        return ["no agent has published a status on this broker"]
    lines = [
        f"{'agent':<20} {'state':<8} {'uptime':>8} {'readings':>9} {'rejected':>8} "
        f"{'outbox':>6}  model / policies"
    ]
    for agent_id in sorted(statuses):
        s = statuses[agent_id]
        uptime = s.get("uptime_s")
        shown = "-" if not isinstance(uptime, (int, float)) else f"{uptime / 3600:.1f}h"
        policies = ", ".join(
            f"{n}: {p.get('engine')}"
            for n, p in (s.get("policies") or {}).items()
            if isinstance(p, dict)
        )
        mark = " (this agent)" if agent_id == own else ""
        lines.append(
            f"{agent_id + mark:<20} {s.get('state', '?'):<8} {shown:>8} "
            f"{s.get('readings_total', '-')!s:>9} {s.get('rejected_total', '-')!s:>8} "
            f"{s.get('outbox_depth', '-')!s:>6}  {s.get('model') or '-'}"
            f"{' / ' + policies if policies else ''}"
        )
        engines = diagnosis_engines(s)
        if engines:
            lines.append(f"{'':<20} diagnosis: {engines}")
    return lines


def diagnosis_engines(status: dict[str, Any]) -> str:
    """Which engine diagnoses each quantity: "temperature: model (drift, spiky), co2:
    statistical"."""
    health = status.get("health")
    engines = health.get("engines") if isinstance(health, dict) else None
    if not isinstance(engines, dict):
        return ""
    out = []
    for quantity, kinds in sorted(engines.items()):
        model = sorted(k for k, e in kinds.items() if e == "model") if isinstance(
            kinds, dict) else []
        out.append(f"{quantity}: model ({', '.join(model)})" if model
                   else f"{quantity}: statistical")
    return ", ".join(out)
