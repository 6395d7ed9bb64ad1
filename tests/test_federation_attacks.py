"""One member against a federation, over a real broker: a device that joined a vector
federation (as ``edge-agent tune --federate`` runs it) sends crafted updates; the two honest
devices still finish with exactly the FedAvg of their own updates.

Each attack failed on the code before the bounds (dcaae2a): a count of 2**60 made the average
the attacker's vector, an update on the attacker's topic in another member's name replaced that
member's, and a count too large for a float stopped the coordinator with an OverflowError."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from agent.broker import Mosquitto
from agent.config import MqttSection
from agent.errors import AgentError
from agent.peers import fedavg as fa
from agent.peers.coordinator import FlSettings
from agent.peers.member import VectorMember
from agent.peers.rounds import RoundMessage
from agent.peers.vectors import VectorFederation
from tests.conftest import Collector

pytestmark = pytest.mark.broker

SIZE = 200
BASE = "edge/groups/house/fl/tune-climate"
HONEST = [(1, 40), (2, 60)]  # (seed, examples) of d1 and d2
ROUNDS = 2
LR = 0.5
ATTACK = np.full(SIZE, 50.0)


def local_training(seed: int, n: int, delay: float = 0.0) -> Any:
    rng = np.random.default_rng(seed)
    truth = np.random.default_rng(0).normal(size=SIZE)
    x = rng.normal(size=(n, SIZE)) / np.sqrt(SIZE)
    y = x @ truth

    def train(start: fa.Array, message: RoundMessage) -> fa.Array:
        time.sleep(delay)  # training takes time on a real device
        return np.asarray(start - message.lr * x.T @ (x @ start - y) / n, dtype=np.float64)

    def score(w: fa.Array) -> float:
        return -float(np.mean((x @ w - y) ** 2))

    return train, score


def reference(start: fa.Array) -> fa.Array:
    """FedAvg of the honest devices alone, as the round messages carry it."""
    msg = RoundMessage("g", "v", "s", 1, 0, "train", "c", 0.0, 1.0, (), False, 1, LR,
                       ("vector",), 1, size=SIZE)
    g = np.asarray(start, dtype=np.float64)
    for _ in range(ROUNDS):
        g = fa.decode_floats(fa.encode_floats(g), SIZE)
        locals_ = [fa.decode_floats(fa.encode_floats(local_training(s, n)[0](g, msg)), SIZE)
                   for s, n in HONEST]
        g = fa.fedavg(locals_, [n for _, n in HONEST])
    return fa.decode_floats(fa.encode_floats(g), SIZE)


def crafted(kind: str, round_: dict[str, Any]) -> dict[str, Any]:
    update = {k: round_[k] for k in ("group", "policy", "session", "round", "attempt", "stage")}
    update.update(agent="d3", count=50, masked=False, data=fa.encode_floats(ATTACK))
    if kind == "count":
        update["count"] = 2**60  # "I have more examples than everyone": FedAvg weight ~1
    elif kind == "impersonation":
        update["agent"] = "d2"  # on d3's topic, in d2's name, before d2 answers
    elif kind == "overflow":
        update["count"] = 2**1100  # no float holds it
        update["data"] = fa.encode_floats(np.zeros(SIZE))
    return update


@pytest.mark.parametrize("kind", ["count", "impersonation", "overflow"])
def test_one_member_cannot_steer_or_stall_the_federation(
        broker: Mosquitto, collector_factory: Callable[..., Collector], kind: str) -> None:
    mqtt = MqttSection(host="127.0.0.1", port=broker.port, prefix="edge")
    start = np.random.default_rng(9).normal(size=SIZE) * 0.01
    settings = FlSettings(rounds=ROUNDS, epochs=1, lr=LR, deadline=4.0)
    feds = []
    for i, (seed, n) in enumerate(HONEST):
        train, score = local_training(seed, n, delay=0.5 if i == 1 else 0.0)
        member = VectorMember(f"d{i + 1}", n, train, score)
        feds.append(VectorFederation(mqtt, f"d{i + 1}", "house", "tune-climate", member,
                                     lambda: start, settings, min_members=3))

    attacker = collector_factory(broker.port, f"{BASE}/round")
    sent: set[tuple[int, int]] = set()

    def on_round(client: Any, userdata: Any, msg: Any) -> None:
        if not msg.payload:
            return
        round_ = json.loads(msg.payload)
        key = (round_["round"], round_["attempt"])
        if round_["stage"] != "final" and "d3" in round_["members"] and key not in sent:
            sent.add(key)
            client.publish(f"{BASE}/update/d3", json.dumps(crafted(kind, round_)), qos=1)

    attacker.client.on_message = on_round
    attacker.client.publish(f"{BASE}/join/d3",
                            json.dumps({"agent": "d3", "ts": time.time(), "count": 50}),
                            qos=1, retain=True)
    results: dict[str, RoundMessage] = {}
    errors: list[BaseException] = []

    def run(fed: VectorFederation) -> None:
        try:
            results[fed.agent_id] = fed.run(timeout=90)
        except (AgentError, ArithmeticError) as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f,)) for f in feds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    attacker.client.publish(f"{BASE}/join/d3", b"", qos=1, retain=True)
    assert sent, "the attacker was never asked for an update"
    assert not errors and set(results) == {"d1", "d2"}, errors
    final = results["d1"]
    assert final.members == ("d1", "d2", "d3") and final.round == ROUNDS + 1
    weights = final.global_weights()
    np.testing.assert_array_equal(weights, reference(start))  # the honest average, exactly
    assert float(np.abs(weights - ATTACK).min()) > 10
