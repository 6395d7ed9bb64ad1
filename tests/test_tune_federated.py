"""Federated fine-tuning for real: two devices train LoRA adapters on the bundled model with
torch, average them over a real broker in parts, and the average is a working llama.cpp
adapter. The wire is checked against FedAvg by hand."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.broker import Mosquitto
from agent.config import MqttSection, load_config
from agent.errors import AgentError
from agent.inference.locate import locate
from agent.inference.model import Model
from agent.peers import fedavg as fa
from agent.peers import fragments
from agent.peers.rounds import parse_round, parse_update
from agent.tune import data
from agent.tune.fedlora import FedTune, flatten, unflatten
from agent.tune.train import Settings, Trained, Tuner
from tests.conftest import Collector

pytestmark = [pytest.mark.broker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = locate("bundled:smollm2-135m")
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


def test_two_devices_average_their_lora_adapters_over_the_broker(
        broker: Mosquitto, tmp_path: Path, collector_factory: Any) -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    config = load_config(ROOT / "config" / "home.example.yaml")
    policy = next(p for p in config.policies if p.name == POLICY)
    mqtt = MqttSection(host="127.0.0.1", port=broker.port, prefix="edge")
    base = "edge/groups/home/fl/tune-policy-climate"
    watch = collector_factory(broker.port, f"{base}/round", f"{base}/round/part/+",
                              f"{base}/update/+/part/+")
    with Model(BUNDLED.path, threads=1, context=1024, sha256=BUNDLED.sha256) as m:
        prompts: dict[str, list[tuple[str, str]]] = {}
        for agent_id, seed in (("d1", 11), ("d2", 22)):  # each its own samples
            samples = data.decision_samples(config, policy, 8 + 8 * int(seed > 20), seed=seed)
            prompts[agent_id] = [("".join(m.chat(s.system, s.user)), s.answer) for s in samples]
    results: dict[str, Trained] = {}
    errors: list[BaseException] = []

    def device(agent: str) -> None:
        try:
            tuner = Tuner(BUNDLED.path, Settings(steps=4, batch=2, lr=2e-3, rank=4, alpha=8,
                                                 threads=1))
            examples = [tuner.encode(p, a) for p, a in prompts[agent]]
            fed = FedTune(mqtt, agent, "home", "policy-climate", rounds=2, deadline=600)
            results[agent] = fed.train(tuner, examples, lambda line: None)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=device, args=(a,)) for a in ("d1", "d2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(900)
    assert not errors, errors
    d1, d2 = results["d1"], results["d2"]
    assert d1.steps == d2.steps == 4  # two rounds of two local steps each
    v1, layout = flatten(d1.lora)
    v2, _ = flatten(d2.lora)
    np.testing.assert_array_equal(v1, v2)  # both hold the group's average

    # the wire: the final weights are the count-weighted mean of the round 2 updates
    rounds, updates = reassembled(watch)
    final = next(r for r in rounds if r.stage == "final")
    assert final.round == 3 and final.size == len(v1)
    np.testing.assert_array_equal(final.global_weights(), v1)
    last = [u for u in updates if u.round == 2]
    assert sorted(u.agent for u in last) == ["d1", "d2"]
    assert {u.agent: u.count for u in last} == {"d1": 8, "d2": 16}
    expected = fa.fedavg([fa.decode_floats(u.data, len(v1)) for u in last],
                         [u.count or 0 for u in last])
    np.testing.assert_allclose(v1, expected.astype(np.float32), rtol=0, atol=1e-7)
    # trained: B moved away from peft's zeros
    assert any(np.abs(b).max() > 0 for _, b in d1.lora.values())

    # the average is an adapter llama.cpp loads, answering in the policy's format
    from agent.tune.export import write_adapter

    path = tmp_path / "federated.gguf"
    write_adapter(path, unflatten(v1, layout), alpha=d1.alpha, n_head=d1.n_head,
                  n_head_kv=d1.n_head_kv)
    with Model(BUNDLED.path, threads=1, context=1024, sha256=BUNDLED.sha256,
               lora_path=path) as m:
        sample = data.decision_samples(config, policy, 1, seed=99)[0]
        prefix, suffix = m.chat(sample.system, sample.user)
        scores = m.score(prefix, suffix, list(policy.actuators[0].actions))
        assert len(scores) == 3 and all(np.isfinite(scores))


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
