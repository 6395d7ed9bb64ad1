"""`edge-agent model push` to a running agent: a bad model rolls back, a good one swaps in.

The operator's keys are made with `edge-agent keygen --update`, as the README says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.broker import Mosquitto
from agent.inference.locate import resolve
from tests.conftest import ROOT, AgentProcess, Collector, agent_config, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.slow]
STATUS = "edge/agents/test-agent/status"
ERRORS = "edge/agents/test-agent/errors"


def edge_agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def push(cfg: Path, file: Path, key: Path) -> subprocess.CompletedProcess[str]:
    return edge_agent("model", "push", str(file), "-c", str(cfg), "--key", str(key))


def test_a_broken_model_is_refused_and_a_good_one_swapped_in(
        tmp_path: Path, broker: Mosquitto, agent_factory: Callable[[Path], AgentProcess],
        collector_factory: Callable[..., Collector]) -> None:
    watch = collector_factory(broker.port, STATUS, ERRORS)
    key = tmp_path / "operator" / "update.key"
    key.parent.mkdir()
    made = edge_agent("keygen", "--update", str(key))
    assert made.returncode == 0, made.stderr
    cfg = agent_config(tmp_path, broker.port, policies=True, policy__engine="rules",
                       security__update_public_key_file=str(key) + ".pub")
    agent = agent_factory(cfg)
    wait_for(lambda: any(s.get("model") for s in watch.on(STATUS)), timeout=60, what="online")
    before = watch.on(STATUS)[-1]["model_sha256"]

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + os.urandom(300_000))  # signed and whole, but not a model
    sent = push(cfg, broken, key)
    assert sent.returncode == 0, sent.stderr
    wait_for(lambda: any("rolled back" in e["error"] for e in watch.on(ERRORS)), timeout=60,
             what="the rollback reported")
    assert agent.alive()
    assert watch.on(STATUS)[-1]["model_sha256"] == before
    assert "as version" in sent.stdout
    assert not (tmp_path / "data" / "models" / "current.json").exists()

    good = tmp_path / "smollm2-copy.gguf"
    good.write_bytes(resolve("bundled:smollm2-135m").read_bytes())
    sent = push(cfg, good, key)
    assert sent.returncode == 0, sent.stderr
    wait_for(lambda: str(watch.on(STATUS)[-1].get("model", "")).endswith("smollm2-copy.gguf"),
             timeout=120, what="the new model running")
    pointer = json.loads((tmp_path / "data" / "models" / "current.json").read_text())
    assert pointer["sha256"] == watch.on(STATUS)[-1]["model_sha256"]
    assert agent.alive()
