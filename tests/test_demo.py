"""`edge-agent demo`: the whole loop, headless and accelerated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.demo import run_demo
from tests.helpers import ROOT

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_the_agent_keeps_rooms_in_their_band_longer_than_no_agent(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_demo(scenario="normal-day", duration=45, speed=300, data_dir=tmp_path,
                      report=tmp_path / "chart.png", live=False, echo=lines.append)
    assert result.sim_seconds > 0  # how far it got depends on the machine: no rule on it
    assert set(result.in_band) == {"livingroom", "bedroom", "kitchen"}
    for room, share in result.in_band.items():
        assert share >= result.baseline[room], (room, result)
    assert sum(result.in_band.values()) > sum(result.baseline.values())
    assert result.commands_sent >= 1 and result.accepted >= 1
    assert result.rejected == 0  # every signed command verified at the actuators
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = "\n".join(lines)
    assert "summary after" in text and "left alone" in text


def test_the_demo_command_runs_headless_and_exits_0(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "demo", "--headless", "--duration", "12", "--speed",
         "120", "--data-dir", str(tmp_path), "--scenario", "heatwave"],
        cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "summary after" in proc.stdout
    assert "demo: dashboard at http://127.0.0.1:" in proc.stdout  # a free loopback port
    bad = subprocess.run([sys.executable, "-m", "agent", "demo", "--scenario", "no-such-thing",
                          "--data-dir", str(tmp_path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2
    assert "scenario" in bad.stderr
