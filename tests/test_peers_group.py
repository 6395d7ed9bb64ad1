"""Group rounds: one decision per window, published by the leader only, taken over on death."""

from __future__ import annotations

import json

import pytest

from agent.peers.aggregate import GroupDecision, NoDecision, Outcome, Result
from agent.peers.group import GroupRound, GroupTracker, window_of
from agent.peers.membership import Membership
from tests.helpers import Clock

ACTIONS = ["cool", "heat", "off"]
EVERY = 10.0
DEADLINE = 2.0


def status(state: str = "online") -> bytes:
    return json.dumps({"state": state, "uptime_s": 600.0, "groups": ["g"]}).encode()


def membership(clock: Clock, *agents: str) -> Membership:
    m = Membership("edge", clock)
    for a in agents:
        m.apply(a, status())
    return m


def result(agent: str, window_end: float, action: str = "cool", value: float = 22.0) -> Result:
    scores = {a: (0.8 if a == action else 0.1) for a in ACTIONS}
    return Result(agent, "climate", window_end, window_end, action, value, 0.8, scores)


def tracker(agent: str, **kw: object) -> GroupTracker:
    args: dict[str, object] = {
        "every": EVERY,
        "deadline": DEADLINE,
        "method": "mean",
        "quorum": 2,
        **kw,
    }
    return GroupTracker(agent, "g", "climate", ACTIONS, **args)  # type: ignore[arg-type]


def test_window_of_keeps_exact_multiples_in_their_window() -> None:
    assert window_of(0.3, 0.1) == 3  # 0.3 / 0.1 == 2.9999999999999996
    assert window_of(1000.0, 10.0) == 100
    assert window_of(1009.99, 10.0) == 100
    assert window_of(-0.5, 10.0) == -1


def test_a_round_takes_one_result_per_member_and_closes_early_when_all_answered() -> None:
    clock = Clock()
    m = membership(clock, "a", "b")
    r = GroupRound(
        "g",
        "climate",
        100,
        opened_at=1000.0,
        deadline=DEADLINE,
        method="vote",
        quorum=2,
        actions=ACTIONS,
    )
    assert r.offer(result("a", 1000.0)) is None
    assert r.offer(result("a", 1000.0, "heat")) == "second result of a for window 100"
    assert not r.due(1000.5, m)
    assert r.offer(result("b", 1000.1, "off", 20.0)) is None
    assert r.due(1000.5, m)  # every online member answered
    outcome = r.close(1000.5)
    assert isinstance(outcome, GroupDecision)
    assert (outcome.group, outcome.window, outcome.members) == ("g", 100, ("a", "b"))
    assert r.close(2000.0) is outcome  # computed once
    assert r.offer(result("c", 1000.2)) == "late: window 100 closed"


def test_a_round_closes_at_its_deadline_without_quorum() -> None:
    clock = Clock()
    m = membership(clock, "a", "b", "c")
    r = GroupRound(
        "g",
        "climate",
        100,
        opened_at=1000.0,
        deadline=DEADLINE,
        method="mean",
        quorum=3,
        actions=ACTIONS,
    )
    r.offer(result("a", 1000.0))
    assert not r.due(1001.9, m)
    assert r.due(1002.0, m)
    outcome = r.close(1002.0)
    assert isinstance(outcome, NoDecision)
    assert "quorum is 3" in outcome.reason


def test_should_publish_only_at_the_leader_and_only_once() -> None:
    clock = Clock()
    m = membership(clock, "a", "b")
    r = GroupRound(
        "g", "climate", 1, opened_at=0.0, deadline=1.0, method="mean", quorum=1, actions=ACTIONS
    )
    r.offer(result("b", 10.0))
    assert not r.should_publish("a", m)  # not closed yet
    r.close(1.0)
    assert r.should_publish("a", m)
    assert not r.should_publish("b", m)
    r.mark_settled()
    assert not r.should_publish("a", m)


def run_window(
    trackers: dict[str, GroupTracker],
    m: Membership,
    clock: Clock,
    start: float,
    answering: list[str],
) -> dict[str, list[Outcome]]:
    for agent in answering:
        res = result(agent, start, "cool" if agent != "c" else "off", 20.0 + ord(agent) % 5)
        for t in trackers.values():
            assert t.offer(res, clock.now, m) is None
    clock.now += DEADLINE
    return {a: t.tick(clock.now, m) for a, t in trackers.items()}


def test_every_member_computes_the_decision_and_only_the_leader_publishes_it() -> None:
    clock = Clock(1000.0)
    m = membership(clock, "a", "b", "c", "d")
    trackers = {a: tracker(a) for a in "abcd"}
    published = run_window(trackers, m, clock, 1000.0, ["a", "b", "c", "d"])
    assert [len(published[a]) for a in "abcd"] == [1, 0, 0, 0]
    decision = published["a"][0]
    assert isinstance(decision, GroupDecision)
    assert decision.action == "cool" and decision.leader == "a" and decision.window == 100
    outcomes = [t.rounds[100].outcome for t in trackers.values()]
    assert all(o == outcomes[0] for o in outcomes)  # the same at every member
    for t in trackers.values():
        assert t.seen(decision, clock.now, m) is None
    clock.now += 100
    assert all(t.tick(clock.now, m) == [] for t in trackers.values())  # never again


def test_the_next_lowest_id_publishes_what_a_dead_leader_did_not() -> None:
    clock = Clock(1000.0)
    m = membership(clock, "a", "b", "c")
    trackers = {a: tracker(a) for a in "abc"}
    for agent in "abc":
        for t in trackers.values():
            t.offer(result(agent, 1000.0), clock.now, m)
    del trackers["a"]  # dies before it closes the round
    clock.now += DEADLINE
    assert all(t.tick(clock.now, m) == [] for t in trackers.values())  # a still looks online
    clock.now += 0.5
    m.apply("a", status("offline"))  # its last will arrives
    published = {x: t.tick(clock.now, m) for x, t in trackers.items()}
    assert len(published["b"]) == 1 and published["c"] == []
    assert published["b"][0].leader == "b" and published["b"][0].window == 100


def test_a_window_the_dead_leader_did_publish_is_not_published_again() -> None:
    clock = Clock(1000.0)
    m = membership(clock, "a", "b")
    trackers = {x: tracker(x) for x in "ab"}
    published = run_window(trackers, m, clock, 1000.0, ["a", "b"])
    # delivered before a's will (same connection)
    trackers["b"].seen(published["a"][0], clock.now, m)
    m.apply("a", status("offline"))
    clock.now += 1
    assert trackers["b"].tick(clock.now, m) == []


def test_a_pending_decision_expires_after_the_grace() -> None:
    clock = Clock(1000.0)
    m = membership(clock, "a", "b")
    b = tracker("b", grace=5.0)
    b.offer(result("a", 1000.0), clock.now, m)
    b.offer(result("b", 1000.0), clock.now, m)
    clock.now += DEADLINE
    assert b.tick(clock.now, m) == []  # a leads
    clock.now += 6.0  # a died silently; its will comes too late
    m.apply("a", b"")
    assert b.tick(clock.now, m) == []
    assert b.expired == 1 and 100 not in b.rounds
    assert b.offer(result("b", 1001.0), clock.now, m) == "late: window 100 is over"


def test_a_decision_seen_before_the_round_opened_settles_it() -> None:
    clock = Clock(1000.0)
    m = membership(clock, "a", "b")
    t = tracker("b")
    outcome = NoDecision("climate", 1000.0, "r", (), "mean", 2, group="g", window=100,
                         leader="a")
    assert t.seen(outcome, clock.now, m) is None
    t.offer(result("b", 1000.0), clock.now, m)
    t.offer(result("a", 1000.0), clock.now, m)
    clock.now += DEADLINE
    assert t.tick(clock.now, m) == []


def test_results_from_outside_the_group_or_time_are_refused() -> None:
    clock = Clock(1000.0)
    m = membership(clock, "a")
    m.apply("x", json.dumps({"state": "online", "groups": ["other"]}).encode())
    t = tracker("a")
    assert t.offer(result("x", 1000.0), clock.now, m) == (
        "x is not an online member of group 'g'")
    tagged = Result(
        "y",
        "climate",
        1000.0,
        1000.0,
        "cool",
        None,
        1.0,
        {"cool": 1.0, "heat": 0.0, "off": 0.0},
        group="g",
    )
    # saying its group itself makes nobody a member: membership is what statuses say
    assert t.offer(tagged, clock.now, m) == "y is not an online member of group 'g'"
    assert "in the future" in (t.offer(result("a", 1100.0), clock.now, m) or "")
    # e.g. queued for a persistent session while we were away: never opens a round
    assert "stale" in (t.offer(result("a", 980.0), clock.now, m) or "")
    other = Result("a", "light", 1000.0, 1000.0, "on", None, 1.0, {"on": 1.0})
    assert t.offer(other, clock.now, m) == "policy 'light' is not 'climate'"


@pytest.mark.parametrize("method", ["mean", "vote"])
def test_a_member_that_missed_the_deadline_is_left_out(method: str) -> None:
    clock = Clock(1000.0)
    m = membership(clock, "a", "b", "c")
    t = tracker("a", method=method, quorum=1)
    t.offer(result("a", 1000.0), clock.now, m)
    t.offer(result("b", 1000.0), clock.now, m)
    clock.now += DEADLINE
    (decision,) = t.tick(clock.now, m)
    assert decision.members == ("a", "b")
    assert t.offer(result("c", 1000.0), clock.now, m) == "late: window 100 closed"


def test_only_the_leader_settles_and_only_windows_near_now() -> None:
    clock = Clock(1000.0)
    m = membership(clock, "a", "b")
    t = tracker("b")

    def outcome(window: int, leader: str | None) -> NoDecision:
        return NoDecision("climate", 1000.0, "r", (), "mean", 2, group="g", window=window,
                          leader=leader)

    assert "the leader is 'a'" in (t.seen(outcome(100, "z"), clock.now, m) or "")
    assert "the leader is 'a'" in (t.seen(outcome(100, None), clock.now, m) or "")
    for future in range(102, 1102):  # forged outcomes of every future window
        assert "now is window 100" in (t.seen(outcome(future, "a"), clock.now, m) or "")
    assert t.seen(outcome(101, "a"), clock.now, m) is None  # the next window: a may be early
    assert len(t._settled_early) == 1
    clock.now += 5 * EVERY
    t.tick(clock.now, m)
    assert t._settled_early == set()  # nothing kept for windows that are over
