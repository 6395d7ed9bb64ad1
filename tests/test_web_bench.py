"""`edge-agent bench ingest --dashboard` runs end to end and prints what the issue asks for; the
health label hook reaches a health service that takes labels."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from agent.bench.dashboard import run_dashboard_bench
from agent.web.views import apply_label, labels_supported

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_bench_ingest_dashboard_prints_ratio_and_memory() -> None:
    lines: list[str] = []
    assert run_dashboard_bench(300, devices=3, rounds=1, echo=lines.append)
    text = "\n".join(lines)
    assert "ratio with/without dashboard: best against best" in text
    assert "one page refresh costs" in text
    assert "resident memory without the dashboard" in text
    assert "resident memory with the dashboard" in text


class LabelledHealth:
    def __init__(self) -> None:
        self.labels: list[tuple[str, str, str]] = []

    def label(self, kind: str, key: str, label: str) -> dict[str, Any]:
        self.labels.append((kind, key, label))
        return {"kind": kind, "key": key, "label": label}


def test_health_labels_go_to_the_service_when_it_takes_them() -> None:
    plain = cast(Any, SimpleNamespace(health=SimpleNamespace()))
    assert not labels_supported(plain)
    assert apply_label(plain, "sensor", "a/b", "confirm")["ok"] is False
    health = LabelledHealth()
    agent = cast(Any, SimpleNamespace(health=health))
    assert labels_supported(agent)
    assert apply_label(agent, "sensor", "a/b", "dismiss") == {
        "ok": True, "result": {"kind": "sensor", "key": "a/b", "label": "dismiss"}}
    assert health.labels == [("sensor", "a/b", "dismiss")]
