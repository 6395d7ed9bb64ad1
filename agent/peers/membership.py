"""Who is online, in which groups, and who leads each group, from the retained statuses.

Every agent keeps ``{p}/agents/{id}/status`` retained (SPEC 3) with its last will saying
``"state": "offline"``, so subscribing to ``{p}/agents/+/status`` tells a newcomer at once who
is there, and the broker tells everyone when one dies. An agent is online while its last
status says ``"online"``; an offline status, any other state, or an empty retained payload
(the retained message cleared) removes it.

Extension of SPEC 3 (compatible: a new optional field): ``"groups": ["livingroom", ...]``,
the peer groups of the agent's policies (``policies[].peers.group``). An agent without the
field is online but in no group.

Leader of a group: the lowest agent id (plain string order) among its online members. A
newcomer is not eligible to lead until it has been up ``settle`` seconds (its status's
``uptime_s`` plus the time since that status arrived), so it never leads a round whose start
it missed; if no member is eligible, the lowest online id leads anyway. ``stale_after``
(optional) drops an agent whose status has not been refreshed for that long, for brokers
that lost a will (a crash without persistence).

At most :data:`MAX_PEERS` agents are known at once. With a roster, the service admits only
statuses signed by the agent of their topic (:mod:`agent.peers.trust`) before they get here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from agent.errors import AgentError
from agent.peers import wire

log = logging.getLogger(__name__)
MAX_PEERS = 1024  # statuses of more distinct agents than this are refused (a flood, no roster)


@dataclass(frozen=True, slots=True)
class Peer:
    agent: str
    groups: frozenset[str]
    received: float  # local clock when the status arrived
    uptime: float  # seconds the agent had been up when it sent the status


def agent_of(prefix: str, topic: str) -> str | None:
    """``{prefix}/agents/{id}/status`` -> ``id``; None for any other topic."""
    parts = topic.split("/")
    if len(parts) == 4 and parts[0] == prefix and parts[1] == "agents" and parts[3] == "status":
        return parts[2] or None
    return None


def parse_status(payload: bytes) -> tuple[bool, frozenset[str], float]:
    """(online, groups, uptime_s) of a status payload; an empty payload is offline."""
    if not payload:
        return False, frozenset(), 0.0
    data = wire.load_object(payload, "status")
    state = data.get("state")
    if not isinstance(state, str):
        raise AgentError(f"status: state must be a string, got {state!r}")
    groups = data.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
        raise AgentError(f"status: groups must be a list of group names, got {groups!r}")
    uptime = 0.0 if data.get("uptime_s") is None else wire.number(data, "uptime_s", "status")
    return state == "online", frozenset(groups), max(0.0, uptime)


class Membership:
    """Fed every message on ``{prefix}/agents/+/status``; pure apart from the injected clock."""

    def __init__(
        self,
        prefix: str,
        clock: Callable[[], float],
        *,
        settle: float = 0.0,
        stale_after: float | None = None,
    ) -> None:
        self.prefix = prefix
        self.clock = clock
        self.settle = settle
        self.stale_after = stale_after
        self._peers: dict[str, Peer] = {}

    @property
    def topic_filter(self) -> str:
        return f"{self.prefix}/agents/+/status"

    def update(self, topic: str, payload: bytes) -> None:
        """Apply one status message; :class:`AgentError` (membership unchanged) if malformed."""
        agent = agent_of(self.prefix, topic)
        if agent is None:
            raise AgentError(f"not a status topic: {topic!r}")
        self.apply(agent, payload)

    def apply(self, agent: str, payload: bytes) -> None:
        online, groups, uptime = parse_status(payload)
        if not online:
            if self._peers.pop(agent, None) is not None:
                log.info("peer %s went offline", agent)
            return
        if agent not in self._peers and len(self._peers) >= MAX_PEERS:
            raise AgentError(f"status of {agent}: already {MAX_PEERS} peers known")
        if agent not in self._peers:
            log.info("peer %s is online (groups %s)", agent, ", ".join(sorted(groups)) or "none")
        self._peers[agent] = Peer(agent, groups, self.clock(), uptime)

    def retain(self, agents: frozenset[str] | set[str]) -> None:
        """Forget every agent not in ``agents`` (a roster reloaded without them)."""
        for agent in [a for a in self._peers if a not in agents]:
            del self._peers[agent]
            log.info("peer %s is no longer in the roster", agent)

    def _alive(self, peer: Peer, now: float) -> bool:
        return self.stale_after is None or now - peer.received <= self.stale_after

    def online(self) -> list[str]:
        now = self.clock()
        return sorted(a for a, p in self._peers.items() if self._alive(p, now))

    def is_online(self, agent: str) -> bool:
        peer = self._peers.get(agent)
        return peer is not None and self._alive(peer, self.clock())

    def groups_of(self, agent: str) -> frozenset[str]:
        peer = self._peers.get(agent)
        return peer.groups if peer is not None and self._alive(peer, self.clock()) else frozenset()

    def members(self, group: str) -> list[str]:
        """Online members of ``group``, in id order."""
        now = self.clock()
        return sorted(
            a for a, p in self._peers.items() if group in p.groups and self._alive(p, now)
        )

    def leader(self, group: str) -> str | None:
        """The lowest id among the group's online members that have settled; else among all
        its online members; None if nobody of the group is online."""
        now = self.clock()
        members = [p for p in self._peers.values() if group in p.groups and self._alive(p, now)]
        settled = [p for p in members if p.uptime + (now - p.received) >= self.settle]
        pool = settled or members
        return min((p.agent for p in pool), default=None)
