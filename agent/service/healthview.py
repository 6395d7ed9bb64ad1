"""``edge-agent health``: the agent's retained health topics as a table in the terminal."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from agent.config import Config
from agent.mqtt.retained import read_retained

ORDER = {"faulty": 0, "suspect": 1, "ok": 2}


def parse(messages: dict[str, bytes], base: str) -> list[tuple[str, dict[str, Any]]]:
    """(series or actuators/device/actuator, health) for every well-formed health message."""
    out = []
    for topic, payload in messages.items():
        try:
            health = json.loads(payload)
        except ValueError:
            continue
        if isinstance(health, dict) and isinstance(health.get("state"), str):
            out.append((topic[len(base) + 1:], health))
    return sorted(out, key=lambda th: (ORDER.get(th[1]["state"], 3), th[0]))


def lines(rows: list[tuple[str, dict[str, Any]]]) -> list[str]:
    if not rows:
        return ["no health reported yet (is the agent running with diagnosis enabled?)"]
    out = [f"{'state':<8} {'fault':<13} {'engine':<11} {'since':<20} what"]
    for key, h in rows:
        since = h.get("since")
        when = (datetime.fromtimestamp(since, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
                if isinstance(since, (int, float)) else "?")
        engine = h.get("engine") or "-"
        out.append(f"{h['state']:<8} {h.get('fault') or '-':<13} {engine:<11} {when:<20} {key}")
        if h["state"] != "ok":
            out.append(f"{'':<55} {h.get('explanation', '')}")
    return out


def health_lines(config: Config, timeout: float = 5.0) -> list[str]:
    base = f"{config.mqtt.prefix}/agents/{config.agent.id}/health"
    return lines(parse(read_retained(config.mqtt, f"{base}/#", timeout=timeout), base))
