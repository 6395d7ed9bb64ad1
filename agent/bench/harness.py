"""A running agent in its own process, as users run it (``edge-agent run``), against a private
Mosquitto: its configuration written to a scratch directory, its retained status followed, its
resident memory sampled (now and peak), and commands on the wire timed against the readings
that caused them. Used by ``bench e2e`` and ``bench memory``; nothing imports it but them."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import psutil
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from agent.broker import Mosquitto
from agent.errors import AgentError
from agent.mqtt.client import no_delay

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "agent.example.yaml"
DEVICE = "bench-room"  # the device whose temperature the policy keeps in its band
BAND = (20.0, 24.0)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``; nan if there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def policy(name: str, engine: str) -> dict[str, Any]:
    """A policy on one temperature whose every band crossing is a command (no rate limits)."""
    return {
        "name": name,
        "every": "1h",
        "inputs": [f"{DEVICE}/temperature"],
        "targets": {f"{DEVICE}/temperature": list(BAND)},
        "goal": "Keep the room between 20 and 24 C.",
        "engine": engine,
        "min_accuracy": 0.9,
        "actuators": [{"device": f"{DEVICE}-hvac", "actuator": "hvac",
                       "actions": ["cool", "heat", "off"], "value": {"min": 16, "max": 28}}],
        "safety": {"min_interval": "1ms", "max_per_hour": 100_000, "min_dwell": "1ms",
                   "command_ttl": "30s"},
    }


def agent_config(broker: Mosquitto, data_dir: Path, name: str, engine: str | None) -> Path:
    """The example configuration on the private broker: readings stored as sent (no smoothing,
    so the reading that crosses the band is the one timed), one policy on ``engine`` (or
    none), status every second; the command key in the scratch directory."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data_dir.mkdir(parents=True, exist_ok=True)
    key = data_dir / "command.key"
    key.write_text(secrets.token_hex(32))
    key.chmod(0o600)
    data["agent"].update(id=name, data_dir=str(data_dir), log_level="WARNING",
                         status_interval="1s")
    data["mqtt"].update(port=broker.port)
    temperature = data["sensors"]["temperature"]
    for kind in ("deadband", "outlier", "smooth"):
        temperature.pop(kind, None)
    data["policies"] = [] if engine is None else [policy(f"bench-{engine}", engine)]
    data["interlocks"] = []
    data["security"]["command_key_file"] = str(key)
    path = data_dir / "agent.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident memory of process ``pid`` now and its peak (VmHWM), in MB."""
    now = psutil.Process(pid).memory_info().rss / 1e6
    peak = now
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return now, peak


class Watcher:
    """A paho client on the private broker: the agent's retained status, and every command on
    an actuator's ``/set`` topic with the time it arrived."""

    def __init__(self, broker: Mosquitto, agent_id: str) -> None:
        self.status: dict[str, Any] = {}
        self.commands: list[tuple[float, dict[str, Any]]] = []
        self._arrived = threading.Condition()
        self._topic_status = f"edge/agents/{agent_id}/status"
        client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        client.on_message = self._on_message
        client.connect(broker.host, broker.port)
        no_delay(client.socket())  # a device sends its reading at once
        client.subscribe([(self._topic_status, 0), ("edge/actuators/+/+/set", 1)])
        client.loop_start()
        self.client = client

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        now = time.perf_counter()
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        with self._arrived:
            if msg.topic == self._topic_status:
                self.status = body
            else:
                self.commands.append((now, body))
            self._arrived.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        with self._arrived:
            if not self._arrived.wait_for(predicate, timeout):
                raise AgentError(f"timed out waiting for {what}")

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class AgentProcess:
    """``edge-agent run -c CONFIG`` in a child process; stopped with SIGTERM."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = config.parent / "agent.log"

    def __enter__(self) -> AgentProcess:
        root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, "PYTHONPATH": path}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent", "run", "-c", str(self.config)],
                env=env, stdout=subprocess.DEVNULL, stderr=log,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def check(self) -> None:
        """Raise AgentError, with the end of its log, if the agent has exited."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace").strip().splitlines()[-5:]
            raise AgentError(f"the agent exited ({self.proc.returncode}): " + " / ".join(tail))

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
