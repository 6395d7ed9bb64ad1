"""Group decisions at run time: the members of a peer group act as one.

Every member publishes its local decision as a result (SPEC 6) and sends no command for a
peered policy. Every member collects the group's results per window and computes the group
decision (mean or vote, quorum, deadline); only the leader — the lowest id among the online
members, from the retained status topics — publishes the decision and sends the one command,
whose id and nonce derive from the decision's id, so a leader taking over can never send the
same decision under a second id.

Who counts (:mod:`agent.peers.trust`). A result must name the agent of its topic and come from
an online member (membership is what statuses say, never what a result claims); an outcome
must come from the current leader and be for a window within one of now. With a roster
(``security.roster_file``), statuses, results and outcomes must also carry the signature of the
roster key of that agent, unsigned ones included, and an online status must be newer than the
last one and no older than ``3 x status_interval`` (a replay cannot revive a dead member).
Every refusal is logged and counted (``peers.refused`` in this agent's status). Without a
roster the group trusts anyone on the broker, and the agent says so at start.
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
from agent.peers import wire
from agent.peers.aggregate import GroupDecision, NoDecision, Outcome, parse_outcome, parse_result
from agent.peers.group import GroupTracker
from agent.peers.membership import Membership
from agent.peers.robust import Robust
from agent.peers.trust import Trust

log = logging.getLogger(__name__)
LOG_EVERY = 10.0  # seconds between two warnings about refused messages of one kind


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
        sec = config.security
        self.trust = Trust.from_files(agent_id, sec.identity_key_file, sec.roster_file)
        peered = [p for p in config.policies if p.peers is not None and p.targets]
        longest = max((p.every + p.peers.deadline for p in peered if p.peers), default=0.0)
        self.stale_after = 3 * config.agent.status_interval
        self.membership = Membership(self.prefix, clock, settle=longest,
                                     stale_after=self.stale_after)
        self.trackers: dict[str, GroupTracker] = {}
        for p in peered:
            assert p.peers is not None
            robust = p.peers.robust
            self.trackers[p.name] = GroupTracker(
                agent_id, p.peers.group, p.name, p.actuators[0].actions, every=p.every,
                deadline=p.peers.deadline, method=p.peers.method, quorum=p.peers.quorum,
                robust=None if robust is None else Robust(robust.method, robust.trim))
        self.rejected = 0
        self._status_ts: dict[str, float] = {}  # newest signed online status per agent
        self._logged: dict[str, tuple[float, int]] = {}  # kind -> (last warning, since then)
        if self.trackers and not self.trust.enforcing:
            log.warning(
                "peer group(s) %s trust anyone who can publish on the broker: any client can "
                "pose as a member, vote and settle decisions. Give every agent its own key "
                "(edge-agent keygen --identity /etc/edge-agent/identity.key), list the public "
                "keys in a roster file and set security.identity_key_file and "
                "security.roster_file", ", ".join(self.groups))

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
                kind = "status"
                self._status(parts[2], msg.payload)
            elif len(parts) == 5 and parts[1] == "agents" and parts[3] == "results":
                kind = "result"
                self._result(parts[2], parts[4], msg.payload)
            elif len(parts) >= 3 and parts[1] == "decisions" and parts[2] in self.trackers:
                kind = "outcome"
                if msg.payload:
                    self._outcome(parts[2], msg.payload)
            else:
                return False
        except AgentError as exc:
            self.refuse(kind, msg.topic, str(exc))
        return True

    def refuse(self, kind: str, topic: str, why: str) -> None:
        """Count a refused message; warn about it, at most every LOG_EVERY seconds per kind
        (a flood of forgeries must not flood the log too)."""
        self.rejected += 1
        self.trust.count(kind)
        now = time.monotonic()
        with self.lock:
            last, skipped = self._logged.get(kind, (float("-inf"), 0))
            if now - last < LOG_EVERY:
                self._logged[kind] = (last, skipped + 1)
                log.debug("ignoring a peer message on %s: %s", topic, why)
                return
            self._logged[kind] = (now, 0)
        more = f" ({skipped} more {kind} messages refused before it)" if skipped else ""
        log.warning("ignoring a peer message on %s: %s%s", topic, why, more)

    def _status(self, agent: str, payload: bytes) -> None:
        if not self.trust.enforcing:
            with self.lock:
                self.membership.apply(agent, payload)
            return
        if not payload:  # anyone may clear a retained message: that says nothing signed
            raise AgentError("empty status (unsigned)")
        data = wire.load_object(payload, "status")
        self.trust.check(data, agent, f"status of {agent}")
        ts = wire.number(data, "ts", "status")
        with self.lock:
            if data.get("state") == "online":
                # a replayed old status must not bring a dead agent back
                last = self._status_ts.get(agent, float("-inf"))
                if ts == last:
                    return  # the same status again (retained and live copies): no news
                if ts < last:
                    raise AgentError(f"status of {agent}: older than the last one")
                if abs(self.clock() - ts) > self.stale_after:  # clocks are synchronised
                    raise AgentError(f"status of {agent}: ts is {ts - self.clock():+.0f}s off")
                self._status_ts[agent] = ts
            self.membership.apply(agent, payload)

    def _result(self, agent: str, policy: str, payload: bytes) -> None:
        tracker = self.trackers.get(policy)
        if tracker is None:
            return
        data = wire.load_object(payload, "result")
        if data.get("agent") != agent:
            raise AgentError(f"result of {data.get('agent')!r} on the topic of {agent!r}")
        self.trust.check(data, agent, f"result of {agent}")
        result = parse_result(payload)
        with self.lock:
            why = tracker.offer(result, self.clock(), self.membership)
        if why is not None:
            log.debug("result of %s for %s not counted: %s", result.agent, policy, why)
            if "not an online member" in why:
                raise AgentError(why)

    def _outcome(self, policy: str, payload: bytes) -> None:
        data = wire.load_object(payload, "decision")
        outcome = parse_outcome(payload)
        self.trust.check(data, outcome.leader or "", f"decision of {outcome.leader}")
        with self.lock:
            why = self.trackers[policy].seen(outcome, self.clock(), self.membership)
        if why is not None:
            raise AgentError(why)

    def outgoing(self, topic: str, payload: bytes) -> bytes:
        """``payload`` signed with this agent's key if it goes to its peers (status, results,
        decisions, federation); everything else as it is."""
        parts = topic.split("/")
        peer_topic = (len(parts) >= 4 and parts[1] == "agents" and parts[2] == self.agent_id
                      and parts[3] in ("status", "results")) or (
            len(parts) >= 3 and parts[1] in ("decisions", "groups"))
        if not peer_topic or parts[0] != self.prefix:
            return payload
        return self.trust.sign(payload)

    def reload_roster(self) -> bool:
        """Re-read the roster (SIGHUP): members it no longer lists are forgotten at once."""
        if not self.trust.reload():
            return False
        roster = self.trust.roster
        assert roster is not None
        with self.lock:
            self.membership.retain(set(roster.ids))
            self._status_ts = {a: t for a, t in self._status_ts.items() if a in roster}
        return True

    def status(self) -> dict[str, Any]:
        with self.lock:
            members = {g: self.membership.members(g) for g in self.groups}
        return {"members": members, **self.trust.status()}

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
