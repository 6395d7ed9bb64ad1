"""Group decisions at run time: the members of a peer group act as one.

Every member publishes its local decision as a result (SPEC 6) and sends no command for a
peered policy. Every member collects the group's results per window and computes the group
decision (mean or vote, quorum, deadline); only the leader — the lowest id among the online
members, from the retained status topics — publishes the decision and sends the one command,
whose id and nonce derive from the decision's id, so a leader taking over can never send the
same decision under a second id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from agent.config import Config
from agent.errors import AgentError
from agent.mqtt import Message
from agent.peers.aggregate import GroupDecision, NoDecision, Outcome, parse_outcome, parse_result
from agent.peers.group import GroupTracker
from agent.peers.membership import Membership

log = logging.getLogger(__name__)


class PeerService:
    def __init__(self, config: Config, agent_id: str, *, publish: Callable[..., Any],
                 act: Callable[[GroupDecision], None],
                 clock: Callable[[], float] = time.time) -> None:
        self.prefix = config.mqtt.prefix
        self.agent_id = agent_id
        self.publish = publish
        self.act = act
        self.clock = clock
        self.lock = threading.Lock()
        peered = [p for p in config.policies if p.peers is not None and p.targets]
        longest = max((p.every + p.peers.deadline for p in peered if p.peers), default=0.0)
        self.membership = Membership(self.prefix, clock, settle=longest,
                                     stale_after=3 * config.agent.status_interval)
        self.trackers: dict[str, GroupTracker] = {}
        for p in peered:
            assert p.peers is not None
            self.trackers[p.name] = GroupTracker(
                agent_id, p.peers.group, p.name, p.actuators[0].actions, every=p.every,
                deadline=p.peers.deadline, method=p.peers.method, quorum=p.peers.quorum)
        self.rejected = 0

    @property
    def groups(self) -> list[str]:
        return sorted({t.group for t in self.trackers.values()})

    def filters(self) -> list[str]:
        if not self.trackers:
            return []
        out = [f"{self.prefix}/agents/+/status"]
        for name in self.trackers:
            out += [f"{self.prefix}/agents/+/results/{name}", f"{self.prefix}/decisions/{name}",
                    f"{self.prefix}/decisions/{name}/none"]
        return out

    def handle(self, msg: Message) -> bool:
        """Take a status, result or decision message; False if it is none of those."""
        parts = msg.topic.split("/")
        try:
            if len(parts) == 4 and parts[1] == "agents" and parts[3] == "status":
                with self.lock:
                    self.membership.update(msg.topic, msg.payload)
            elif len(parts) == 5 and parts[1] == "agents" and parts[3] == "results":
                self._result(parts[4], msg.payload)
            elif len(parts) >= 3 and parts[1] == "decisions" and parts[2] in self.trackers:
                if msg.payload:
                    outcome = parse_outcome(msg.payload)
                    with self.lock:
                        self.trackers[parts[2]].seen(outcome)
            else:
                return False
        except AgentError as exc:
            self.rejected += 1
            log.warning("ignoring a peer message on %s: %s", msg.topic, exc)
        return True

    def _result(self, policy: str, payload: bytes) -> None:
        tracker = self.trackers.get(policy)
        if tracker is None:
            return
        result = parse_result(payload)
        with self.lock:
            why = tracker.offer(result, self.clock(), self.membership)
        if why is not None:
            log.debug("result of %s for %s not counted: %s", result.agent, policy, why)

    def tick(self) -> list[Outcome]:
        """Close what is due; publish and act on what this member (as leader) must."""
        now = self.clock()
        with self.lock:
            due = [o for t in self.trackers.values() for o in t.tick(now, self.membership)]
        for outcome in due:
            if isinstance(outcome, GroupDecision):
                self.act(outcome)
                self.publish(f"{self.prefix}/decisions/{outcome.policy}", outcome.to_payload(),
                             qos=1, retain=True)
            elif isinstance(outcome, NoDecision):
                self.publish(f"{self.prefix}/decisions/{outcome.policy}/none",
                             outcome.to_payload(), qos=1)
        return due
