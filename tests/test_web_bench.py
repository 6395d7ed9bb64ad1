"""`edge-agent bench ingest --dashboard` runs end to end and prints what the issue asks for; the
dashboard's confirm/dismiss is the health service's own answer."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from agent.bench.dashboard import run_dashboard_bench
from agent.service.health import HealthService
from agent.web.views import apply_label

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_bench_ingest_dashboard_prints_ratio_and_memory() -> None:
    lines: list[str] = []
    assert run_dashboard_bench(300, devices=3, rounds=1, echo=lines.append)
    text = "\n".join(lines)
    assert "ratio with/without dashboard: best against best" in text
    assert "one page refresh costs" in text
    assert "resident memory without the dashboard" in text
    assert "resident memory with the dashboard" in text


def test_a_dismiss_from_the_dashboard_is_the_answer_people_give_elsewhere(tmp_path: Path) -> None:
    """The dashboard's confirm/dismiss goes to the real health service: a stuck thermometer's
    alarm confirmed is stored as a label; dismissed, it is cleared and its health says ok."""
    from tests.test_diagnosis_service import KEY, Recorder, config, reading

    now = [1.8e9]
    out = Recorder()
    health = HealthService(config(tmp_path), "pi", publish=out, key=KEY, clock=lambda: now[0])
    labels: list[dict[str, Any]] = []
    health.store_label = labels.append
    agent = cast(Any, SimpleNamespace(health=health))
    key = "livingroom-1/temperature"
    assert apply_label(agent, "sensor", key, "confirm")["ok"] is False  # nothing known yet
    rng = random.Random(2)
    for i in range(215):  # jitters like a real thermometer, then stands still
        now[0] = 1.8e9 + 60 * i
        health.observe(reading(now[0], round(21 + rng.gauss(0, 0.1), 3) if i < 200 else 21.5))
        health.tick()
    assert health.status()["unhealthy"][f"sensor:{key}"]["state"] == "faulty"
    confirmed = apply_label(agent, "sensor", key, "confirm")
    assert confirmed["ok"] and confirmed["diagnosis"]["verdict"] == "confirmed"
    assert apply_label(agent, "actuator", "livingroom-hvac/hvac", "dismiss")["ok"] is False
    dismissed = apply_label(agent, "sensor", key, "dismiss")
    assert dismissed["ok"] and dismissed["diagnosis"]["verdict"] == "dismissed"
    assert [row["verdict"] for row in labels] == ["confirmed", "dismissed"]
    assert all(row["origin"] == "web" for row in labels)
    topic = f"edge/agents/pi/health/{key}"
    assert [m for t, m, _ in out.sent if t == topic][-1]["state"] == "ok"
