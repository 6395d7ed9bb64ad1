"""Federated fine-tuning for real: two ``edge-agent tune --federate`` processes train LoRA
adapters on the bundled model with torch, average them over a real broker in parts, and the
average is a working llama.cpp adapter. The wire is checked against FedAvg by hand.

(Each device is its own process, as in use: two torch models loaded at once by threads of one
process gave a model that predicted every token alike.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from agent.broker import Mosquitto
from agent.config import load_config
from agent.errors import AgentError
from agent.inference.model import Model
from agent.peers import fedavg as fa
from agent.peers import fragments
from agent.peers.rounds import parse_round, parse_update
from agent.policy.engines import Answer, LlmEngine, Situation
from agent.tune import data
from agent.tune.fedlora import flatten, unflatten
from tests.conftest import Collector
from tests.helpers import bundled

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = bundled()
POLICY = "livingroom-climate"


def test_flatten_and_unflatten_are_inverse() -> None:
    rng = np.random.default_rng(0)
    lora = {f"m{i}": (rng.normal(size=(4, 6)).astype(np.float32),
                      rng.normal(size=(6, 4)).astype(np.float32)) for i in range(3)}
    vector, layout = flatten(lora)
    assert len(vector) == 3 * 48
    back = unflatten(vector, layout)
    for m, (a, b) in lora.items():
        np.testing.assert_array_equal(back[m][0], a)
        np.testing.assert_array_equal(back[m][1], b)
    with pytest.raises(AgentError, match="weights for an adapter"):
        unflatten(vector[:-1], layout)


def device_config(tmp_path: Path, agent: str, port: int) -> Path:
    text = (ROOT / "config" / "home.example.yaml").read_text()
    text = text.replace("data_dir: ./data/home", f"data_dir: {tmp_path / agent}")
    text = re.sub(r"(?m)^  id: .*$", f"  id: {agent}", text)
    text = re.sub(r"(?m)^  port: .*$", f"  port: {port}", text)
    path = tmp_path / f"{agent}.yaml"
    path.write_text(text)
    return path


@pytest.mark.broker
def test_two_devices_average_their_lora_adapters_over_the_broker(
        broker: Mosquitto, tmp_path: Path, collector_factory: Any) -> None:
    """``edge-agent tune --federate`` on two devices (two processes, each its own samples)."""
    base = "edge/groups/home/fl/tune-policy-livingroom-climate"
    watch = collector_factory(broker.port, f"{base}/round", f"{base}/round/part/+",
                              f"{base}/update/+", f"{base}/update/+/part/+")
    procs = {}
    for agent, samples in (("d1", 16), ("d2", 24)):
        cmd = [sys.executable, "-m", "agent", "tune", "-c",
               str(device_config(tmp_path, agent, broker.port)), "--policy", POLICY,
               "--federate", "home", "--rounds", "2", "--steps", "4", "--samples", str(samples),
               "--cases", "3", "--threads", "1", "--no-install", "--out", str(tmp_path / agent)]
        procs[agent] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    out = {}
    for agent, proc in procs.items():
        try:
            out[agent] = proc.communicate(timeout=1200)[0].decode()
        finally:
            proc.kill()
    for agent, text in out.items():
        assert procs[agent].returncode in (0, 1), text  # 1: measured, not better (4 steps)
        assert "coordinating federation" in text if agent == "d1" else "waiting for" in text
        assert re.search(r"federation \w+ finished after round 2 with d1, d2", text), text
        assert "training stopped early" not in text, text
    sha = {a: re.findall(r"sha256 ([0-9a-f]{64})", t) for a, t in out.items()}
    assert sha["d1"] and sha["d1"] == sha["d2"], sha  # one adapter for the group
    kept = {a: next((tmp_path / a).glob("*.gguf")) for a in out}
    assert kept["d1"].read_bytes() == kept["d2"].read_bytes()

    # the wire: the final weights are the count-weighted mean of the round 2 updates
    rounds, updates = reassembled(watch)
    final = next(r for r in rounds if r.stage == "final")
    assert final.round == 3 and final.size is not None
    last = [u for u in updates if u.round == 2]
    assert sorted(u.agent for u in last) == ["d1", "d2"]
    counts = {u.agent: u.count for u in last}
    assert counts["d2"] > counts["d1"] > 0  # weighted by each device's own sample count
    expected = fa.fedavg([fa.decode_floats(u.data, final.size) for u in last],
                         [u.count or 0 for u in last])
    np.testing.assert_allclose(final.global_weights(), expected.astype(np.float32), rtol=0,
                               atol=1e-7)
    first = next(r for r in rounds if r.round == 1).global_weights()
    assert not np.array_equal(first, final.global_weights())  # trained

    # what each device kept is that average, as an adapter llama.cpp loads and answers with
    reader = gguf.GGUFReader(str(kept["d1"]))
    b_norms = [float(np.abs(t.data).sum()) for t in reader.tensors if t.name.endswith("lora_b")]
    assert b_norms and max(b_norms) > 0
    config = load_config(device_config(tmp_path, "d1", broker.port))
    policy = next(p for p in config.policies if p.name == POLICY)
    cases = data.decision_samples(config, policy, 6, seed=99)
    actions = list(policy.actuators[0].actions)

    def answers(lora: Path | None) -> tuple[list[Answer], float]:
        """The product's llm engine deciding each sample, and the mean log-likelihood of the
        labelled action."""
        with Model(BUNDLED.path, threads=1, context=1024, sha256=BUNDLED.sha256,
                   lora_path=lora) as m:
            engine = LlmEngine(policy, m.chat, m.score)
            out = [engine.decide(Situation(s.user, 0.0, (0.0, 0.0), "inside")) for s in cases]
            labelled = [m.score(*m.chat(s.system, s.user), [s.answer])[0] for s in cases]
        return out, float(np.mean(labelled))

    tuned, tuned_label = answers(kept["d1"])
    plain, plain_label = answers(None)
    for answer in tuned:  # a decision, in the format, with scores over the actions
        assert answer.action in actions and set(answer.scores) == set(actions)
        assert sum(answer.scores.values()) == pytest.approx(1.0)
        assert set(json.loads(answer.raw)) == set(actions)
    assert [a.scores for a in tuned] != [a.scores for a in plain]  # the adapter is in use
    assert tuned_label > plain_label  # and it learnt: the labelled actions are likelier


def reassembled(watch: Collector) -> tuple[list[Any], list[Any]]:
    parts = fragments.Reassembler()
    rounds, updates = [], []
    with watch._lock:
        messages = list(watch.messages)
    for topic, payload, _ in messages:
        whole: bytes | None = payload
        if fragments.base_topic(topic) is not None:
            whole = parts.add(topic, payload)
            topic = fragments.base_topic(topic) or topic
        if not whole:
            continue
        if topic.endswith("/round"):
            rounds.append(parse_round(whole))
        else:
            updates.append(parse_update(whole))
    return rounds, updates


def test_an_unreachable_broker_is_reported_before_any_slow_work(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "tune", "-c", str(device_config(tmp_path, "d1", port)),
         "--policy", POLICY, "--federate", "home"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 1
    assert f"tune: cannot reach the broker 127.0.0.1:{port} to federate" in proc.stderr
    assert "samples" not in proc.stdout  # nothing was generated, scored or trained
