"""The terminal health view reads the retained health topics off a real broker."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.broker import Mosquitto
from agent.config import load_config
from agent.service.healthview import health_lines
from tests.conftest import Collector, agent_config, wait_for

pytestmark = pytest.mark.broker


def test_faulty_first_with_its_explanation(
    broker: Mosquitto, tmp_path: Path, collector_factory: Callable[..., Collector]
) -> None:
    cfg = load_config(agent_config(tmp_path, broker.port))
    base = f"edge/agents/{cfg.agent.id}/health"
    pub = collector_factory(broker.port, f"{base}/#")
    ok: dict[str, Any] = {"state": "ok", "fault": None, "since": 1.8e9, "confidence": 0,
          "evidence": {},
          "explanation": "fine."}
    bad = {**ok, "state": "faulty", "fault": "stuck", "explanation": "room-1 temperature looks "
           "stuck at 21.4.", "engine": "model"}
    pub.client.publish(f"{base}/room-2/temperature", json.dumps(ok), qos=1, retain=True)
    pub.client.publish(f"{base}/room-1/temperature", json.dumps(bad), qos=1, retain=True)
    pub.client.publish(f"{base}/junk/x", b"not json", qos=1, retain=True)
    wait_for(lambda: len(pub.messages) == 3, what="the retained health messages")
    out = health_lines(cfg)
    assert out[1].split() == ["faulty", "stuck", "model", "2027-01-15", "08:00:00",
                              "room-1/temperature"]
    assert out[2].strip() == "room-1 temperature looks stuck at 21.4."
    assert out[3].split()[0] == "ok" and out[3].endswith("room-2/temperature")
    assert len(out) == 4
