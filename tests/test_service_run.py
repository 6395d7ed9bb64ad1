"""The agent as a systemd service: notify messages on a real AF_UNIX socket, status command."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from agent.broker import Mosquitto
from agent.config import read_yaml
from tests.conftest import AgentProcess, Collector, agent_config, wait_for
from tests.helpers import ROOT

pytestmark = pytest.mark.broker


def test_ready_watchdog_and_stopping_reach_notify_socket(tmp_path: Path, broker: Mosquitto) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.5)
    cfg = agent_config(tmp_path, broker.port, policies=True)
    (tmp_path / "command.key").chmod(0o644)  # too open: the agent warns at start
    env = dict(os.environ, NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="2000000",
               WATCHDOG_PID="")
    log = (tmp_path / "agent.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(cfg)], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    received: list[str] = []

    def drain() -> list[str]:
        try:
            while True:
                received.extend(sock.recv(4096).decode().splitlines())
        except TimeoutError:
            pass
        return received

    try:
        wait_for(lambda: "READY=1" in drain(), timeout=90, what="READY=1")
        wait_for(lambda: "WATCHDOG=1" in drain(), timeout=30, what="pings")
        ready_at = received.index("READY=1")
        assert any(line.startswith("STATUS=") for line in received[:ready_at + 1])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        drain()
        assert "STOPPING=1" in received
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
        log.close()
    text = (tmp_path / "agent.log").read_text()
    assert "command.key" in text and "readable" in text  # the permission warning


def test_status_command_lists_this_agent_and_its_peers(
        tmp_path: Path, broker: Mosquitto, agent_factory: Callable[[Path], AgentProcess],
        collector_factory: Callable[..., Collector]) -> None:
    watch = collector_factory(broker.port, "edge/agents/+/status")
    cfg = agent_config(tmp_path, broker.port)
    agent_factory(cfg)
    wait_for(lambda: bool(watch.on("edge/agents/test-agent/status")), what="a status")
    watch.client.publish("edge/agents/peer-9/status", b'{"state": "offline", "ts": 1}',
                         qos=1, retain=True).wait_for_publish(5)
    time.sleep(0.2)
    proc = subprocess.run([sys.executable, "-m", "agent", "status", "-c", str(cfg), "--wait",
                           "1"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(ln.startswith("test-agent (this agent)") and "online" in ln for ln in lines)
    assert any(ln.startswith("peer-9") and "offline" in ln for ln in lines)


def test_home_assistant_discovery_and_cleaned_values(
        tmp_path: Path, broker: Mosquitto, agent_factory: Callable[[Path], AgentProcess],
        collector_factory: Callable[..., Collector]) -> None:
    watch = collector_factory(broker.port, "homeassistant/#", "edge/agents/test-agent/#")
    cfg = agent_config(tmp_path, broker.port, homeassistant__discovery=True)
    agent_factory(cfg)
    wait_for(lambda: any(t.startswith("homeassistant/binary_sensor/") and t.endswith("/config")
                         for t, _, _ in watch.messages), what="the connectivity entity")
    watch.publish("edge/sensors/room-7/temperature", b'{"value": 71.6, "unit": "F", "seq": 1}')
    clean = "edge/agents/test-agent/clean/room-7/temperature"
    wait_for(lambda: bool(watch.on(clean)), what="the cleaned value")
    assert watch.on(clean)[-1]["value"] == pytest.approx(22.0)
    assert watch.on(clean)[-1]["unit"] == "C"

    def sensor_configs() -> list[dict[str, object]]:
        return [json.loads(p) for t, p, _ in watch.messages
                if t.startswith("homeassistant/sensor/") and "room-7" in t and p]

    wait_for(lambda: bool(sensor_configs()), what="the sensor announced")
    config = sensor_configs()[-1]
    assert config["state_topic"] == clean
    assert config["unit_of_measurement"] == "°C"
    before = len(sensor_configs())
    watch.publish("homeassistant/status", b"online")  # Home Assistant restarted
    wait_for(lambda: len(sensor_configs()) > before, what="announced again")


def test_sighup_reloads_policies_refuses_a_bad_file_and_drops_no_reading(
        tmp_path: Path, broker: Mosquitto, agent_factory: Callable[[Path], AgentProcess],
        collector_factory: Callable[..., Collector]) -> None:
    import sqlite3

    watch = collector_factory(broker.port, "edge/agents/test-agent/status")
    cfg = agent_config(tmp_path, broker.port, policies=True, policy__peers=None,
                       policy__engine="rules", policy__every="1s",
                       policy__safety={"min_interval": "1s", "min_dwell": "1s"})
    good = cfg.read_text()
    agent = agent_factory(cfg)
    wait_for(lambda: bool(watch.on("edge/agents/test-agent/status")), what="online")
    n = 0

    def stream(count: int) -> None:
        nonlocal n
        for _ in range(count):
            watch.publish("edge/sensors/livingroom-1/temperature",
                          json.dumps({"value": 27.5, "seq": n}))
            n += 1
            time.sleep(0.005)

    def audit(sql: str) -> list[tuple[object, ...]]:
        conn = sqlite3.connect(tmp_path / "data" / "edge-agent.db")
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    stream(100)
    wait_for(lambda: ("cool",) in audit("SELECT action FROM audit"), what="cool at 27.5 C")
    cfg.write_text("policies: [this is not a policy\n")
    agent.signal(signal.SIGHUP)
    stream(100)
    wait_for(lambda: "reload of" in agent.log() and "refused" in agent.log(), what="refusal")
    data = read_yaml(good)
    data["policies"][0]["targets"] = {"livingroom-1/temperature": [28, 30]}
    cfg.write_text(yaml.safe_dump(data))
    agent.signal(signal.SIGHUP)
    stream(100)
    wait_for(lambda: "reloaded sensors, policies" in agent.log(), what="the reload")
    mark = audit("SELECT max(id) FROM audit")[0][0]
    wait_for(lambda: ("heat",) in audit(f"SELECT action FROM audit WHERE id > {mark}"),
             what="heat at 27.5 C now that the band is 28-30")
    wait_for(lambda: audit("SELECT count(*) FROM readings")[0][0] == 300, what="300 readings")
    assert audit("SELECT count(DISTINCT seq) FROM readings") == [(300,)]
    assert agent.alive()


def test_the_running_agent_serves_prometheus_metrics(
        tmp_path: Path, broker: Mosquitto, agent_factory: Callable[[Path], AgentProcess],
        collector_factory: Callable[..., Collector]) -> None:
    import urllib.request

    from agent.broker import free_port

    port = free_port()
    watch = collector_factory(broker.port, "edge/agents/test-agent/status")
    cfg = agent_config(tmp_path, broker.port, metrics__port=port)
    agent_factory(cfg)
    wait_for(lambda: bool(watch.on("edge/agents/test-agent/status")), what="online")
    watch.publish("edge/sensors/dev-1/temperature", b'{"value": 21.0, "seq": 1}')
    watch.publish("edge/sensors/dev-1/temperature", b"not a number")

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    wait_for(lambda: "edge_agent_readings 1.0" in scrape(), what="readings in metrics")
    text = scrape()
    assert 'edge_agent_rejected_total{reason="malformed"} 1.0' in text
    assert "edge_agent_ingest_latency_seconds_count 2.0" in text
