"""`edge-agent model push` to a running agent: a bad model rolls back while the old one keeps
running and deciding, a different good one swaps in and decides.

The operator's keys are made with `edge-agent keygen --update`, as the README says; the good
model is the bundled one re-quantized to q8_0 with `edge-agent model quantize`, so old and new
differ in every byte that matters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.broker import Mosquitto
from agent.inference.locate import resolve, sha256_of
from tests.conftest import AgentProcess, Collector, agent_config, wait_for
from tests.helpers import ROOT, db_rows

pytestmark = [pytest.mark.broker, pytest.mark.slow]
STATUS = "edge/agents/test-agent/status"
ERRORS = "edge/agents/test-agent/errors"
SENSOR = "edge/sensors/livingroom-1/temperature"


def edge_agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def push(cfg: Path, file: Path, key: Path) -> subprocess.CompletedProcess[str]:
    return edge_agent("model", "push", str(file), "-c", str(cfg), "--key", str(key))


def decides_with(tmp_path: Path, watch: Collector, since: float, gated: bool = True
                 ) -> tuple[str, str]:
    """(engine, model sha256) of the first decision the agent audits after ``since``, feeding it
    readings until it makes one; ``gated``: once the llm engine has passed its fitness gate
    (else whatever engine runs meanwhile, rules while the gate is pending)."""
    if gated:
        wait_for(lambda: watch.on(STATUS)[-1]["policies"]["climate"]["engine"] == "llm",
                 timeout=120, what="the llm engine through its fitness gate")
    since = max(since, time.time())
    db = tmp_path / "data" / "edge-agent.db"
    sql = "SELECT engine, model_sha256, raw_output FROM audit WHERE ts > ? ORDER BY ts"
    deadline = time.monotonic() + 120
    while not (rows := db_rows(db, sql, (since,))):
        assert time.monotonic() < deadline, "no decision within 120s"
        watch.publish(SENSOR, json.dumps({"value": 29.0, "ts": time.time()}))
        time.sleep(0.5)
    engine, sha, raw = rows[0]
    assert engine == "llm" or not gated, f"decided by {engine} after the gate"
    assert raw or engine != "llm", "the model gave no answer"
    return str(engine), str(sha)


def test_a_broken_model_is_refused_and_a_different_good_one_swapped_in(
        tmp_path: Path, broker: Mosquitto, agent_factory: Callable[[Path], AgentProcess],
        collector_factory: Callable[..., Collector]) -> None:
    watch = collector_factory(broker.port, STATUS, ERRORS)
    key = tmp_path / "operator" / "update.key"
    key.parent.mkdir()
    made = edge_agent("keygen", "--update", str(key))
    assert made.returncode == 0, made.stderr
    good = tmp_path / "smollm2-q8_0.gguf"
    requantized = edge_agent("model", "quantize", "--type", "q8_0",
                             str(resolve("bundled:smollm2-135m")), str(good))
    assert requantized.returncode == 0, requantized.stderr
    cfg = agent_config(tmp_path, broker.port, policies=True, policy__engine="llm",
                       policy__min_accuracy=0.0,
                       policy__every="1s", security__update_public_key_file=str(key) + ".pub")
    agent = agent_factory(cfg)
    wait_for(lambda: any(s.get("model_state") == "ready" for s in watch.on(STATUS)), timeout=120,
             what="the model ready")
    before = watch.on(STATUS)[-1]["model_sha256"]
    assert before == sha256_of(resolve("bundled:smollm2-135m"))
    assert decides_with(tmp_path, watch, time.time()) == ("llm", before)

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + os.urandom(300_000))  # signed and whole, but not a model
    sent = push(cfg, broken, key)
    assert sent.returncode == 0, sent.stderr
    assert "as version" in sent.stdout
    wait_for(lambda: any("rolled back" in e["error"] for e in watch.on(ERRORS)), timeout=60,
             what="the rollback reported")
    rolled_back = time.time()
    assert not (tmp_path / "data" / "models" / "current.json").exists()
    # the old model keeps running: the agent says so, and answers with it
    wait_for(lambda: watch.on(STATUS)[-1]["ts"] > rolled_back, what="a status after it")
    assert watch.on(STATUS)[-1]["model_sha256"] == before
    assert watch.on(STATUS)[-1]["model_state"] == "ready"
    assert decides_with(tmp_path, watch, rolled_back) == ("llm", before)

    new = sha256_of(good)
    assert new != before
    sent = push(cfg, good, key)
    assert sent.returncode == 0, sent.stderr
    wait_for(lambda: watch.on(STATUS)[-1].get("model_sha256") == new, timeout=120,
             what="the new model running")
    swapped = time.time()
    assert str(watch.on(STATUS)[-1]["model"]).endswith("smollm2-q8_0.gguf")
    # the pushed model runs in a context sized as the first one was, not model.context (2048)
    sized = [line.split("model context: ")[1] for line in agent.log_path.read_text().splitlines()
             if "model context: " in line]
    assert len(sized) == 3, sized  # at start, for the broken file, for the good one
    assert sized[0] == sized[-1] and not sized[0].startswith("2048"), sized
    pointer = json.loads((tmp_path / "data" / "models" / "current.json").read_text())
    assert pointer["sha256"] == new
    # deciding for the new model (its own fitness gate, 60 cases, is not waited for)
    assert decides_with(tmp_path, watch, swapped, gated=False)[1] == new
    assert agent.alive()
