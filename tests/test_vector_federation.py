"""Vector federations (LoRA-sized parameter vectors): FedAvg against a numpy reference, first
message by message, then between three devices over a real broker with every message in parts.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from agent.broker import Mosquitto
from agent.config import MqttSection
from agent.errors import AgentError
from agent.peers import fedavg as fa
from agent.peers.coordinator import Coordinator, FlSettings
from agent.peers.member import VectorMember
from agent.peers.rounds import RoundMessage, parse_round
from agent.peers.vectors import VectorFederation

SIZE = 20_000


def private_data(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A device's own least-squares problem (the same true weights, its own samples)."""
    rng = np.random.default_rng(seed)
    truth = np.random.default_rng(0).normal(size=SIZE)
    x = rng.normal(size=(n, SIZE)) / np.sqrt(SIZE)
    return x, x @ truth + 0.01 * rng.normal(size=n)


def local_training(seed: int, n: int, steps: int = 3) -> Any:
    x, y = private_data(seed, n)

    def train(start: fa.Array, message: RoundMessage) -> fa.Array:
        w = np.array(start, dtype=np.float64)
        for _ in range(steps):
            w -= message.lr * x.T @ (x @ w - y) / n
        return w

    def score(w: fa.Array) -> float:
        return -float(np.mean((x @ w - y) ** 2))

    return train, score


def reference(starts: fa.Array, devices: list[tuple[int, int]], rounds: int, lr: float) -> fa.Array:
    """FedAvg by hand: every device trains from the global, the average weighted by count."""
    g = np.asarray(starts, dtype=np.float64)
    msg = RoundMessage("g", "v", "s", 1, 0, "train", "c", 0.0, 1.0, (), False, 1, lr, ("vector",),
                       1, size=SIZE)
    for _ in range(rounds):
        g = fa.decode_floats(fa.encode_floats(g), SIZE)  # what the round message carries
        locals_ = [fa.decode_floats(fa.encode_floats(local_training(s, n)[0](g, msg)), SIZE)
                   for s, n in devices]
        g = fa.fedavg(locals_, [n for _, n in devices])
    return fa.decode_floats(fa.encode_floats(g), SIZE)


DEVICES = [(1, 40), (2, 60), (3, 100)]


def test_a_vector_federation_is_fedavg_round_by_round() -> None:
    settings = FlSettings(rounds=3, epochs=1, lr=0.5, deadline=10.0)
    c = Coordinator("d1", "g", "v", ("vector",), 1, settings, session="s", size=SIZE)
    members = []
    for i, (seed, n) in enumerate(DEVICES):
        train, score = local_training(seed, n)
        members.append(VectorMember(f"d{i + 1}", n, train, score, current=score(np.zeros(SIZE))))
    start = np.random.default_rng(9).normal(size=SIZE) * 0.01
    msg: RoundMessage | None = c.start(0.0, [m.agent_id for m in members], start)
    assert msg is not None and (msg.stage, msg.round, msg.size) == ("train", 1, SIZE)
    now = 0.0
    while msg is not None and msg.stage != "final":
        for m in members:
            update = m.on_round(msg.to_payload())
            assert update is not None and update.count == m.count
            assert c.on_update(update.to_payload(), now) is None
        now += 1
        msg = c.tick(now, [m.agent_id for m in members])
    assert msg is not None and msg.stage == "final" and msg.round == 4
    for m in members:
        assert m.on_round(msg.to_payload()) is None
        assert m.final_score is not None and m.adopted  # better than zeros on its own data
    np.testing.assert_array_equal(msg.global_weights(), reference(start, DEVICES, 3, 0.5))


def test_a_member_keeps_its_own_when_the_federated_vector_scores_lower() -> None:
    train, score = local_training(1, 40)
    m = VectorMember("d1", 40, train, score, current=0.0)  # nothing can beat a perfect fit
    final = RoundMessage("g", "v", "s", 2, 0, "final", "d1", 1.0, 1.0, ("d1",), False, 1, 0.5,
                         ("vector",), 1, weights=fa.encode_floats(np.ones(SIZE)), size=SIZE)
    assert m.on_round(final.to_payload()) is None
    assert not m.adopted and m.final_score is not None and m.final_score < 0


def test_vector_rounds_must_carry_weights() -> None:
    bad = RoundMessage("g", "v", "s", 1, 0, "train", "d1", 1.0, 1.0, ("d1",), False, 1, 0.5,
                       ("vector",), 1, size=SIZE)
    with pytest.raises(AgentError, match="carries weights"):
        parse_round(bad.to_payload())
    c = Coordinator("d1", "g", "v", ("vector",), 1, FlSettings(), size=SIZE)
    with pytest.raises(AgentError, match="starts from 20000 weights"):
        c.start(0.0, ["d1"], np.zeros(3))


@pytest.mark.broker
def test_three_devices_federate_over_a_real_broker_in_parts(broker: Mosquitto) -> None:
    mqtt = MqttSection(host="127.0.0.1", port=broker.port, prefix="edge")
    start = np.random.default_rng(9).normal(size=SIZE) * 0.01
    settings = FlSettings(rounds=2, epochs=1, lr=0.5, deadline=60.0)
    feds, results, errors = [], {}, []
    for i, (seed, n) in enumerate(DEVICES):
        train, score = local_training(seed, n)
        member = VectorMember(f"d{i + 1}", n, train, score, current=score(np.zeros(SIZE)))
        feds.append(VectorFederation(mqtt, f"d{i + 1}", "house", "tune-climate", member,
                                     lambda: start, settings, min_members=3, part_limit=16_384))

    def run(fed: VectorFederation) -> None:
        try:
            results[fed.agent_id] = fed.run(timeout=120)
        except AgentError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f,)) for f in feds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    assert not errors and len(results) == 3
    finals = {r.session for r in results.values()}
    assert len(finals) == 1
    final = results["d1"]
    assert final.coordinator == "d1" and final.round == 3 and final.members == ("d1", "d2", "d3")
    np.testing.assert_array_equal(final.global_weights(), reference(start, DEVICES, 2, 0.5))
    for fed in feds:
        assert fed.member.adopted
        # one vector of 20,000 float32 is 80 KB, ~107 KB in base64: every update went in parts
        assert fed.traffic.messages_sent >= 2 * 7 and fed.traffic.received > 3 * 107_000

