"""A model that cannot run never takes the agent down: the trial runs in a child process, and
when the child fails or dies the agent keeps deciding on rules and says so in its status, its
log, an error event and its metrics."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from agent.broker import Mosquitto, free_port
from tests.conftest import AgentProcess, Collector, agent_config, wait_for

pytestmark = pytest.mark.broker

TEMPERATURE = "edge/sensors/livingroom-1/temperature"
HUMIDITY = "edge/sensors/livingroom-1/humidity"
SET = "edge/actuators/livingroom-hvac/hvac/set"
STATUS = "edge/agents/test-agent/status"
ERRORS = "edge/agents/test-agent/errors"


def unusable(watch: Collector) -> dict[str, str] | None:
    for status in reversed(watch.on(STATUS)):
        if isinstance(status.get("model"), dict):
            return status["model"]  # type: ignore[no-any-return]
    return None


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()  # type: ignore[no-any-return]


def still_decides_on_rules(agent: AgentProcess, watch: Collector) -> None:
    for i in range(5):
        watch.publish(TEMPERATURE, json.dumps({"value": 27.5, "seq": int(time.time()) * 10 + i}))
        watch.publish(HUMIDITY, json.dumps({"value": 50.0}))
    wait_for(lambda: bool(watch.on(SET)), timeout=60, what="a command decided on rules")
    assert watch.on(SET)[0]["action"] == "cool"
    assert agent.alive()
    policies = watch.on(STATUS)[-1]["policies"]
    assert policies["climate"]["engine"] == "rules"


def test_a_model_file_llama_cpp_cannot_load(
        tmp_path: Path, broker: Mosquitto, agent_factory: Callable[[Path], AgentProcess],
        collector_factory: Callable[..., Collector]) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(8192))
    port = free_port()
    cfg = agent_config(tmp_path, broker.port, policies=True, policy__every="2s",
                       metrics__port=port, model__path=str(bad))
    watch = collector_factory(broker.port, STATUS, SET, ERRORS)
    agent = agent_factory(cfg)
    wait_for(lambda: unusable(watch) is not None, timeout=120, what="model unusable in status")
    model = unusable(watch)
    assert model is not None
    assert model["state"] == "unusable" and model["file"] == "broken.gguf"
    assert "cannot load model" in model["reason"]
    assert watch.on(STATUS)[-1]["model_state"] == "unusable"
    assert any("model unusable" in e["error"] for e in watch.on(ERRORS))
    assert "edge_agent_model_usable 0.0" in scrape(port)
    still_decides_on_rules(agent, watch)
    assert "model unusable" in agent.log()


def test_a_trial_killed_by_a_signal(
        tmp_path: Path, broker: Mosquitto, agent_factory: Callable[[Path], AgentProcess],
        collector_factory: Callable[..., Collector]) -> None:
    """The real trial child of the real agent, killed with SIGSEGV while it runs."""
    cfg = agent_config(tmp_path, broker.port, policies=True, policy__every="2s")
    watch = collector_factory(broker.port, STATUS, SET, ERRORS)
    agent = agent_factory(cfg)
    assert agent.proc is not None
    killed = threading.Event()

    def kill_the_trial() -> None:
        assert agent.proc is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and agent.alive():
            for child in psutil.Process(agent.proc.pid).children():
                try:
                    if "agent.inference.trial" in " ".join(child.cmdline()):
                        child.send_signal(signal.SIGSEGV)
                        killed.set()
                        return
                except psutil.NoSuchProcess:
                    continue
            time.sleep(0.01)

    threading.Thread(target=kill_the_trial, daemon=True).start()
    wait_for(lambda: unusable(watch) is not None, timeout=120, what="model unusable in status")
    assert killed.is_set()
    model = unusable(watch)
    assert model is not None
    assert "SIGSEGV" in model["reason"] and "rebuild" in model["reason"]
    still_decides_on_rules(agent, watch)


def test_a_good_model_is_ready(
        tmp_path: Path, broker: Mosquitto, agent_factory: Callable[[Path], AgentProcess],
        collector_factory: Callable[..., Collector]) -> None:
    cfg = agent_config(tmp_path, broker.port, policies=True)
    watch = collector_factory(broker.port, STATUS)
    agent_factory(cfg)
    wait_for(lambda: any(s.get("model_state") == "ready" for s in watch.on(STATUS)),
             timeout=180, what="the model ready")
    ready = next(s for s in watch.on(STATUS) if s.get("model_state") == "ready")
    assert isinstance(ready["model"], str) and ready["model"].endswith(".gguf")  # SPEC 3
