"""Membership from retained statuses: online, groups, leader, newcomers, stale agents."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.errors import AgentError
from agent.peers.membership import Membership, agent_of
from tests.helpers import Clock


def status(state: str = "online", **extra: Any) -> bytes:
    return json.dumps({"state": state, "ts": 1.0, "uptime_s": 3600.0, **extra}).encode()


def topic(agent: str) -> str:
    return f"edge/agents/{agent}/status"


def make(**kw: Any) -> tuple[Membership, Clock]:
    clock = Clock()
    return Membership("edge", clock, **kw), clock


def test_statuses_say_who_is_online_and_in_which_groups() -> None:
    m, _ = make()
    m.update(topic("pi-b"), status(groups=["livingroom"]))
    m.update(topic("pi-a"), status(groups=["livingroom", "kitchen"]))
    m.update(topic("pi-c"), status())  # no groups field: online, in no group
    assert m.online() == ["pi-a", "pi-b", "pi-c"]
    assert m.members("livingroom") == ["pi-a", "pi-b"]
    assert m.members("kitchen") == ["pi-a"]
    assert m.groups_of("pi-c") == frozenset()
    assert m.leader("livingroom") == "pi-a"
    assert m.leader("garage") is None
    assert m.topic_filter == "edge/agents/+/status"


@pytest.mark.parametrize("gone", [status("offline", groups=["g"]), b"", status("stopping")])
def test_offline_empty_or_other_state_removes_the_agent(gone: bytes) -> None:
    m, _ = make()
    m.update(topic("a"), status(groups=["g"]))
    m.update(topic("b"), status(groups=["g"]))
    m.update(topic("a"), gone)
    assert m.members("g") == ["b"]
    assert m.leader("g") == "b"
    assert not m.is_online("a")
    m.update(topic("a"), status(groups=["g"]))  # back again: leads again
    assert m.leader("g") == "a"


def test_malformed_status_raises_and_changes_nothing() -> None:
    m, _ = make()
    m.update(topic("a"), status(groups=["g"]))
    for bad in (
        b"{",
        b"[]",
        b'{"state": 1}',
        status(groups="g"),
        status(groups=[1]),
        status(uptime_s="long"),
    ):
        with pytest.raises(AgentError):
            m.update(topic("a"), bad)
    assert m.members("g") == ["a"]
    with pytest.raises(AgentError, match="not a status topic"):
        m.update("edge/agents/a/results/climate", status())


def test_agent_of_reads_only_status_topics() -> None:
    assert agent_of("edge", "edge/agents/pi-1/status") == "pi-1"
    assert agent_of("edge", "other/agents/pi-1/status") is None
    assert agent_of("edge", "edge/agents//status") is None
    assert agent_of("edge", "edge/agents/pi-1/status/x") is None


def test_a_newcomer_leads_only_after_it_settled() -> None:
    m, clock = make(settle=10.0)
    m.update(topic("b"), status(groups=["g"]))
    m.update(topic("a"), status(groups=["g"], uptime_s=2.0))  # lower id, just started
    assert m.leader("g") == "b"
    clock.now += 7.9
    assert m.leader("g") == "b"
    clock.now += 0.2  # 2 s of uptime when it reported + 8.1 s since
    assert m.leader("g") == "a"


def test_when_nobody_settled_the_lowest_online_id_leads() -> None:
    m, _ = make(settle=10.0)
    m.update(topic("b"), status(groups=["g"], uptime_s=0.5))
    m.update(topic("a"), status(groups=["g"], uptime_s=0.1))
    assert m.leader("g") == "a"


def test_stale_statuses_count_as_offline() -> None:
    m, clock = make(stale_after=90.0)
    m.update(topic("a"), status(groups=["g"]))
    clock.now += 60
    m.update(topic("b"), status(groups=["g"]))
    assert m.leader("g") == "a"
    clock.now += 31  # a's last status is 91 s old: its will was lost
    assert m.online() == ["b"]
    assert m.leader("g") == "b"
    assert m.groups_of("a") == frozenset()
