"""The federated round protocol, message by message: FedAvg of what arrived by the deadline,
secure rounds with a dropout, a coordinator taking over, adoption, bad messages."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agent.errors import AgentError
from agent.peers import fedavg as fa
from agent.peers.coordinator import Coordinator, FlSettings
from agent.peers.member import DpSettings, Member
from agent.peers.rounds import (
    RoundMessage,
    UpdateMessage,
    key_payload,
    key_topic,
    parse_round,
    parse_update,
    round_topic,
    update_topic,
)
from agent.policy.head import SoftmaxHead

CLASSES = ("cool", "heat", "off")
DIM = 5


def data(seed: int, n: int) -> tuple[fa.Array, list[str]]:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(size=(3, DIM))  # the same task everywhere
    idx = rng.integers(0, 3, size=n)
    return 2.0 + centres[idx] + 0.3 * rng.normal(size=(n, DIM)), [CLASSES[i] for i in idx]


def members(n: int = 3, **kw: object) -> list[Member]:
    out = []
    for i in range(n):
        x, y = data(10 + i, 20 + 10 * i)
        hx, hy = data(50 + i, 15)
        out.append(Member(f"m{i}", x, y, hx, hy, rng=np.random.default_rng(i), **kw))  # type: ignore[arg-type]
    return out


def coordinator(secure: bool = False, rounds: int = 3) -> Coordinator:
    return Coordinator(
        "m0",
        "g",
        "climate",
        CLASSES,
        DIM,
        FlSettings(rounds=rounds, epochs=5, lr=0.5, deadline=10.0, secure=secure),
        session="s1",
    )


def answer(
    msg: RoundMessage, ms: list[Member], c: Coordinator, now: float, skip: tuple[str, ...] = ()
) -> dict[str, UpdateMessage]:
    sent = {}
    for m in ms:
        update = m.on_round(msg.to_payload())
        if update is not None and m.agent_id not in skip:
            assert c.on_update(update.to_payload(), now) is None
            sent[m.agent_id] = update
    return sent


def test_topics() -> None:
    assert round_topic("edge", "g", "climate") == "edge/groups/g/fl/climate/round"
    assert update_topic("edge", "g", "climate", "m1") == "edge/groups/g/fl/climate/update/m1"
    assert key_topic("edge", "g", "climate", "m1") == "edge/groups/g/fl/climate/key/m1"


def test_a_federation_runs_moments_then_fedavg_rounds_then_final() -> None:
    ms, c = members(), coordinator()
    names = [m.agent_id for m in ms]
    msg = c.start(0.0, names)
    assert msg.stage == "moments" and msg.weights is None
    sent = answer(msg, ms, c, 0.0)
    msg2 = c.tick(0.1, names)  # everybody answered: no need to wait for the deadline
    assert msg2 is not None and (msg2.round, msg2.stage) == (1, "train")
    moments = fa.fedavg(
        [fa.decode_floats(sent[n].data, 2 * DIM) for n in names],
        [sent[n].count or 0 for n in names],
    )
    expected = fa.Standardizer.from_moments(moments)
    np.testing.assert_allclose(msg2.standardizer().mean, expected.mean, rtol=1e-6)
    np.testing.assert_array_equal(msg2.global_weights(), np.zeros(msg2.layout.size))
    msg = msg2
    for r in (1, 2, 3):
        sent = answer(msg, ms, c, float(r))
        nxt = c.tick(float(r), names)
        assert nxt is not None
        reference = fa.fedavg(
            [fa.decode_floats(sent[n].data, msg.layout.size) for n in names],
            [sent[n].count or 0 for n in names],
        )
        np.testing.assert_allclose(nxt.global_weights(), reference, rtol=1e-6, atol=1e-6)
        msg = nxt
    assert msg.stage == "final" and c.done and c.tick(100.0, names) is None
    assert all(m.on_round(msg.to_payload()) is None for m in ms)
    x, y = data(99, 200)
    assert msg.head().accuracy(x, y) > 0.95
    assert all(m.head is not None for m in ms)


def test_members_that_miss_the_deadline_are_left_out() -> None:
    ms, c = members(), coordinator()
    names = [m.agent_id for m in ms]
    assert c.tick(0.0, names) is None  # not started
    msg = c.start(0.0, names)
    answer(msg, ms, c, 0.0)
    train = c.tick(0.0, names)
    assert train is not None
    msg = train
    sent = answer(msg, ms, c, 1.0, skip=("m2",))
    assert c.tick(5.0, names) is None  # still waiting for m2
    nxt = c.tick(10.0, names)  # the deadline
    assert nxt is not None and nxt.round == 2
    reference = fa.fedavg(
        [fa.decode_floats(sent[n].data, msg.layout.size) for n in ("m0", "m1")],
        [sent["m0"].count or 0, sent["m1"].count or 0],
    )
    np.testing.assert_allclose(nxt.global_weights(), reference, rtol=1e-6, atol=1e-6)
    assert set(c.history[-2].up_bytes) == {"m0", "m1"}
    late = ms[2].on_round(msg.to_payload())
    assert late is not None
    assert c.on_update(late.to_payload(), 11.0) == "late: update for round 1.0"


def run_secure(skip_first_train: tuple[str, ...] = ()) -> tuple[Coordinator, RoundMessage]:
    keys = [fa.KeyPair.generate() for _ in range(4)]
    ms = members(4)
    for m, k in zip(ms, keys, strict=True):
        m.keys = k
    for m in ms:
        for other in ms:
            m.on_key(key_payload(other.agent_id, other.keys))  # type: ignore[arg-type]
    c = coordinator(secure=True, rounds=2)
    names = [m.agent_id for m in ms]
    msg = c.start(0.0, names)
    now = 0.0
    while msg.stage != "final":
        skip = skip_first_train if (msg.round, msg.attempt) == (1, 0) else ()
        answer(msg, ms, c, now, skip)
        now += 10.0
        nxt = c.tick(now, names)
        assert nxt is not None
        msg = nxt
    return c, msg


def test_secure_rounds_give_the_plain_average() -> None:
    ms, c = members(4), coordinator(rounds=2)
    names = [m.agent_id for m in ms]
    msg = c.start(0.0, names)
    while msg.stage != "final":
        answer(msg, ms, c, 0.0)
        nxt = c.tick(0.0, names)
        assert nxt is not None
        msg = nxt
    secure, secure_msg = run_secure()
    np.testing.assert_allclose(secure_msg.global_weights(), msg.global_weights(), atol=1e-5)
    masked = [h.up_bytes for h in secure.history if h.stage == "train"]
    assert all(len(b) == 4 for b in masked)


def test_a_secure_round_with_a_missing_member_is_asked_again_of_those_who_answered() -> None:
    c, final = run_secure(skip_first_train=("m1",))
    attempts = [(h.round, h.attempt, h.expected, h.averaged) for h in c.history]
    assert (1, 0, ("m0", "m1", "m2", "m3"), False) in attempts
    assert (1, 1, ("m0", "m2", "m3"), True) in attempts
    assert final.stage == "final"


def test_a_secure_round_is_never_averaged_over_fewer_than_three() -> None:
    ms = members(2, group_key=b"k" * 32)
    c = coordinator(secure=True)
    answer(c.start(0.0, ["m0", "m1"]), ms, c, 0.0)
    retry = c.tick(0.0, ["m0", "m1"])  # both answered, but two are too few
    assert retry is not None and (retry.round, retry.attempt) == (0, 1)
    assert not c.history[0].averaged


def test_a_new_coordinator_resumes_and_members_resend_the_same_update() -> None:
    ms = members(dp=DpSettings(clip=1.0, sigma=0.5))
    c = coordinator()
    names = [m.agent_id for m in ms]
    answer(c.start(0.0, names), ms, c, 0.0)
    msg = c.tick(0.0, names)
    assert msg is not None
    first = {m.agent_id: m.on_round(msg.to_payload()) for m in ms}
    # m0 dies; m1 takes over from the retained round message
    heir = Coordinator("m1", "g", "climate", CLASSES, DIM, c.settings)
    resumed = heir.resume(parse_round(msg.to_payload()), 20.0, ["m1", "m2"])
    assert (resumed.round, resumed.attempt, resumed.coordinator) == (1, 1, "m1")
    assert resumed.session == msg.session
    again = {m.agent_id: m.on_round(resumed.to_payload()) for m in ms}
    assert again["m0"] is None  # not listed any more
    for name in ("m1", "m2"):
        a, b = first[name], again[name]
        assert a is not None and b is not None
        assert a.data == b.data  # trained and noised once per round, never twice
        assert heir.on_update(b.to_payload(), 20.0) is None
    nxt = heir.tick(20.0, ["m1", "m2"])
    assert nxt is not None and nxt.round == 2 and nxt.coordinator == "m1"


def test_a_member_keeps_its_head_when_the_global_is_worse_on_its_held_out_data() -> None:
    ms = members(1)
    m = ms[0]
    m.head = SoftmaxHead.fit(m.x, m.labels, list(CLASSES))
    bad = RoundMessage(
        "g",
        "climate",
        "s1",
        2,
        0,
        "train",
        "m9",
        0.0,
        10.0,
        ("m0",),
        False,
        1,
        0.5,
        CLASSES,
        DIM,
        fa.encode_floats(np.zeros(DIM)),
        fa.encode_floats(np.ones(DIM)),
        fa.encode_floats(np.r_[np.zeros(3 * DIM), [5.0, 0.0, 0.0]]),
    )
    before = m.head
    assert m.on_round(bad.to_payload()) is not None
    assert m.head is before and m.kept == 1 and m.adopted == 0


def test_bad_messages_are_refused() -> None:
    c = coordinator()
    msg = c.start(0.0, ["m0", "m1"])
    good = UpdateMessage(
        "g", "climate", "s1", 0, 0, "moments", "m1", 10, False, fa.encode_floats(np.zeros(2 * DIM))
    )
    assert c.on_update(good.to_payload(), 0.0) is None
    assert c.on_update(good.to_payload(), 0.0) == "second update of m1"
    stranger = json.loads(good.to_payload())
    stranger["agent"] = "m7"
    assert c.on_update(json.dumps(stranger).encode(), 0.0) == "m7 is not listed in round 0"
    other = json.loads(good.to_payload())
    other["session"] = "s2"
    assert c.on_update(json.dumps(other).encode(), 0.0) == "update for another federation"
    short = json.loads(good.to_payload())
    short["agent"] = "m0"
    short["data"] = fa.encode_floats(np.zeros(3))
    with pytest.raises(AgentError, match="expected"):
        c.on_update(json.dumps(short).encode(), 0.0)
    for bad in (b"{}", b"[]", b'{"masked": "yes"}'):
        with pytest.raises(AgentError):
            parse_update(bad)
    broken = json.loads(msg.to_payload())
    broken["stage"] = "dance"
    with pytest.raises(AgentError, match="stage"):
        parse_round(json.dumps(broken).encode())
    assert parse_round(msg.to_payload()) == msg


def test_a_round_nobody_answers_is_tried_again_then_given_up() -> None:
    c = coordinator()
    first = c.start(0.0, ["m0", "m1"])
    second = c.tick(10.0, ["m0", "m1", "m2"])
    assert second is not None and second.attempt == 1 and second.members == ("m0", "m1", "m2")
    assert c.tick(20.0, ["m0"]) is not None
    assert c.tick(30.0, ["m0"]) is None
    assert c.done and c.failed == "round 0: too few updates in 3 attempts"
    assert first.attempt == 0
