"""People's answers on a fault, through a running agent on a real broker: a stuck thermometer
confirmed in words on the intents topic, then dismissed with ``edge-agent health dismiss``;
both stored as labels in SQLite, the dismissed alarm cleared and kept quiet while the sensor
stays stuck; status and ``edge-agent health`` say which engine judges each series."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.broker import Mosquitto
from agent.diagnosis.answers import CONFIRMED, DISMISSED, Answer, Unclear, parse
from tests.conftest import AgentProcess, Collector, agent_config, start_agent, wait_for
from tests.helpers import ROOT, db_rows

pytestmark = pytest.mark.broker
BASE = "edge/agents/test-agent"
HEALTH = f"{BASE}/health/livingroom-1/temperature"


def test_the_words_people_use() -> None:
    series = ["livingroom-1/temperature", "livingroom-1/humidity", "kitchen-1/humidity",
              "livingroom-2/temperature"]
    stuck = {"livingroom-1/temperature": "stuck"}
    assert parse("the livingroom thermometer is fine", series, stuck) == Answer(
        DISMISSED, "livingroom-1/temperature")
    assert parse("yes, the kitchen humidity sensor is broken", series) == Answer(
        CONFIRMED, "kitchen-1/humidity")
    assert parse("livingroom-2 temperature is not broken", series) == Answer(
        DISMISSED, "livingroom-2/temperature")
    assert isinstance(parse("the livingroom thermometer is fine", series), Unclear)  # which?
    assert isinstance(parse("the garage thermometer is broken", series), Unclear)
    assert parse("turn off the kitchen light", series) is None
    assert parse("the kitchen is fine", series) is None  # no sensor named: not an answer


class Sensor:
    """livingroom-1 as firmware would send it: a noisy temperature, then ``stuck`` at one
    value, and a humidity that keeps moving."""

    def __init__(self, pub: Collector) -> None:
        self.pub = pub
        self.stuck = threading.Event()
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        rng = random.Random(4)
        while not self.stop.is_set():
            temperature = 21.5 if self.stuck.is_set() else round(21 + rng.gauss(0, 0.1), 2)
            self.pub.publish("edge/sensors/livingroom-1/temperature", str(temperature))
            self.pub.publish("edge/sensors/livingroom-1/humidity",
                             str(round(45 + rng.gauss(0, 0.5), 1)))
            self.sent += 1
            self.stop.wait(0.1)


def test_a_fault_confirmed_in_words_and_dismissed_on_the_command_line(
        tmp_path: Path, broker: Mosquitto, agent_factory: Callable[[Path], AgentProcess],
        collector_factory: Callable[..., Collector]) -> None:
    config = agent_config(tmp_path, broker.port, policies=True,
                          model__path=str(tmp_path / "no-model.gguf"),
                          diagnosis__check_every="1s", diagnosis__engine="statistical")
    watch = collector_factory(broker.port, f"{BASE}/status", f"{BASE}/intents/reply", HEALTH,
                              f"{BASE}/faults")
    start_agent(agent_factory, config, watch)
    sensor = Sensor(collector_factory(broker.port))
    sensor.thread.start()
    try:
        wait_for(lambda: len(watch.on(HEALTH)) >= 1, what="the thermometer's health")
        wait_for(lambda: sensor.sent >= 80, what="a history of readings that move")
        sensor.stuck.set()
        wait_for(lambda: any(h["fault"] == "stuck" and h["state"] == "faulty"
                             for h in watch.on(HEALTH)), timeout=60, what="stuck")
        assert watch.on(HEALTH)[-1]["engine"] == "statistical"

        watch.publish(f"{BASE}/intents", json.dumps(
            {"id": "p1", "text": "yes, the livingroom thermometer is broken"}))
        watch.publish(f"{BASE}/intents", json.dumps(
            {"id": "p2", "text": "the garage thermometer is fine"}))
        wait_for(lambda: len(watch.on(f"{BASE}/intents/reply")) >= 2, what="the replies")
        replies = {r["id"]: r for r in watch.on(f"{BASE}/intents/reply")}
        assert replies["p1"]["ok"] is True and replies["p1"]["command"] is None
        assert replies["p1"]["diagnosis"]["verdict"] == "confirmed"
        assert replies["p1"]["diagnosis"]["label"] == "stuck"
        assert replies["p2"]["ok"] is False and "garage" in replies["p2"]["error"]
        assert watch.on(HEALTH)[-1]["state"] == "faulty"  # confirmed: the alarm stays

        done = subprocess.run(
            [sys.executable, "-m", "agent", "health", "dismiss", "livingroom-1", "temperature",
             "-c", str(config)], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "stuck dismissed" in done.stdout
        wait_for(lambda: watch.on(HEALTH)[-1]["state"] == "ok", what="the alarm cleared")
        assert any(e.get("dismissed") == "stuck" for e in watch.on(f"{BASE}/faults"))
        seen = len(watch.on(HEALTH))
        statuses = len(watch.on(f"{BASE}/status"))
        wait_for(lambda: len(watch.on(f"{BASE}/status")) >= statuses + 5,
                 what="five more statuses, with health checks between them")
        assert all(h["state"] == "ok" for h in watch.on(HEALTH)[seen - 1:])  # still stuck: quiet
        status = watch.on(f"{BASE}/status")[-1]
        assert set(status["health"]["engines"]["temperature"].values()) == {"statistical"}
    finally:
        sensor.stop.set()
        sensor.thread.join()

    labels = db_rows(tmp_path / "data" / "edge-agent.db",
                     "SELECT verdict, fault, label, digest, origin FROM diagnosis_labels "
                     "ORDER BY id")
    assert [row[:3] for row in labels] == [("confirmed", "stuck", "stuck"),
                                           ("dismissed", "stuck", "ok")]
    assert all("many identical readings" in str(row[3]) for row in labels)
    shown = subprocess.run([sys.executable, "-m", "agent", "health", "-c", str(config),
                            "--wait", "1"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines()
               if line.endswith("livingroom-1/temperature"))
    assert row.split()[:3] == ["ok", "-", "statistical"]


def test_the_answer_commands_have_help() -> None:
    for sub in ("confirm", "dismiss"):
        done = subprocess.run([sys.executable, "-m", "agent", "health", sub, "--help"],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "DEVICE QUANTITY" in done.stdout
