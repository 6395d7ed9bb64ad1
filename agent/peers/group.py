"""One group decision per window, published by exactly one member: the leader.

Windows. A result belongs to window ``floor(window_end / every)`` of its policy, so every
member files it under the same window whatever its arrival order (members decide on a
schedule aligned to multiples of ``every``, so a window's results arrive together; clocks are
synchronised anyway, commands depend on it, SPEC 4).

A round (:class:`GroupRound`) is opened at a member by the first result of its window; it
takes at most one result per member and closes ``deadline`` after it opened, or as soon as
every online member of the group has answered. Closing computes the outcome
(:func:`agent.peers.aggregate.aggregate`): a :class:`GroupDecision`, or a
:class:`NoDecision` with the reason when fewer results than the quorum arrived.

Exactly one publication per window:

- every member computes every round's outcome, but only the member that is the group's
  leader (:meth:`Membership.leader`, evaluated when the round closes and again on every tick
  after) publishes it; nobody else can, so a non-leader never publishes a decision or a
  command;
- every member listens to ``{p}/decisions/{policy}`` and ``{p}/decisions/{policy}/none`` and
  marks a window settled when its outcome appears there (:meth:`GroupTracker.seen`); a
  settled window is never published again. Only an outcome published by the current leader
  settles a window, and only a window that has a round here or lies within one window of
  now (so forged outcomes of future windows cannot silence the group, and what is kept for
  windows not yet opened stays a handful);
- a result counts only from an online member of the group (:class:`Membership`), at most
  one per member, so a round holds at most as many results as the group has members;
- a closed, unsettled round stays pending for ``grace`` seconds (default: ``every``). When the
  leader dies before publishing, the broker publishes its last will (at once on a broken
  connection, after 1.5 keep-alives on a silent one, plus the will delay if one is set); the
  next lowest id sees it in its membership on its next tick and publishes the pending
  outcome. So leadership moves within one deadline plus the broker's will delay, and no
  decision is lost as long as that is shorter than ``grace``;
- a leader publishes before its will can be sent, and the broker delivers one client's
  messages in order, so a member always sees the dead leader's last decision before its
  offline status and never publishes a window twice. :attr:`GroupDecision.decision_id` is the
  same at every member; using it for the command's id and nonce makes the actuator refuse a
  second copy as a replay even in the remaining races (a partitioned but living leader).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import replace

from agent.peers.aggregate import Method, NoDecision, Outcome, Result, aggregate
from agent.peers.membership import Membership
from agent.peers.robust import Robust

log = logging.getLogger(__name__)


def window_of(window_end: float, every: float) -> int:
    """The window a result belongs to; the epsilon keeps ``k * every`` in window ``k``."""
    return math.floor(window_end / every + 1e-9)


class GroupRound:
    """The state of one group decision: open -> closed (outcome known) -> settled."""

    def __init__(
        self,
        group: str,
        policy: str,
        window: int,
        *,
        opened_at: float,
        deadline: float,
        method: Method,
        quorum: int,
        actions: Sequence[str],
        weighted: bool = False,
        robust: Robust | None = None,
    ) -> None:
        self.group = group
        self.policy = policy
        self.window = window
        self.opened_at = opened_at
        self.closes_at = opened_at + deadline
        self.method: Method = method
        self.quorum = quorum
        self.actions = list(actions)
        self.weighted = weighted
        self.robust = robust
        self.results: dict[str, Result] = {}
        self.outcome: Outcome | None = None
        self.closed_at: float | None = None
        self.settled = False  # its outcome is on the wire, from us or from another member

    def offer(self, result: Result) -> str | None:
        """Take a member's result; the reason it was refused, or None."""
        if self.outcome is not None:
            return f"late: window {self.window} closed"
        if result.policy != self.policy:
            return f"policy {result.policy!r} is not {self.policy!r}"
        if result.agent in self.results:
            return f"second result of {result.agent} for window {self.window}"
        if set(result.scores) != set(self.actions):
            return f"scores over {sorted(result.scores)}, the policy has {sorted(self.actions)}"
        self.results[result.agent] = result
        return None

    def due(self, now: float, membership: Membership) -> bool:
        if now >= self.closes_at:
            return True
        members = membership.members(self.group)
        return bool(members) and all(m in self.results for m in members)

    def close(self, now: float) -> Outcome:
        """The outcome, computed once."""
        if self.outcome is None:
            outcome = aggregate(
                list(self.results.values()),
                self.method,
                self.quorum,
                self.actions,
                weighted=self.weighted,
                policy=self.policy,
                robust=self.robust,
            )
            self.outcome = replace(outcome, group=self.group, window=self.window)
            self.closed_at = now
        return self.outcome

    def should_publish(self, self_id: str, membership: Membership) -> bool:
        """True only at the group's current leader, for a closed round nobody published."""
        return (
            self.outcome is not None
            and not self.settled
            and membership.leader(self.group) == self_id
        )

    def mark_settled(self) -> None:
        self.settled = True


class GroupTracker:
    """Every round of one policy's group at one member: feed it results, the outcomes seen
    on the wire and ticks; :meth:`tick` returns what this member must publish now."""

    def __init__(
        self,
        agent_id: str,
        group: str,
        policy: str,
        actions: Sequence[str],
        *,
        every: float,
        deadline: float,
        method: Method,
        quorum: int,
        weighted: bool = False,
        grace: float | None = None,
        robust: Robust | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.group = group
        self.policy = policy
        self.actions = list(actions)
        self.every = every
        self.deadline = deadline
        self.method: Method = method
        self.quorum = quorum
        self.weighted = weighted
        self.grace = every if grace is None else grace
        self.robust = robust
        self.rounds: dict[int, GroupRound] = {}
        self.horizon: int | None = None  # windows up to here are over
        self._settled_early: set[int] = set()  # outcomes seen before our round opened
        self.published = 0
        self.expired = 0  # closed, never published by anyone within the grace

    def offer(self, result: Result, now: float, membership: Membership) -> str | None:
        """File a result under its window; the reason it was refused, or None."""
        if result.policy != self.policy:
            return f"policy {result.policy!r} is not {self.policy!r}"
        # membership is what the (signed) statuses say, never what a result claims: results
        # of agents that are not online members cannot fill a quorum or outvote the group
        if result.group not in (None, self.group):
            return f"result for group {result.group!r}, not {self.group!r}"
        if self.group not in membership.groups_of(result.agent):
            return f"{result.agent} is not an online member of group {self.group!r}"
        window = window_of(result.window_end, self.every)
        if self.horizon is not None and window <= self.horizon:
            return f"late: window {window} is over"
        if result.window_end > now + self.every:
            return f"window_end {result.window_end} is in the future"
        if now - result.window_end > self.every + self.deadline:
            return f"stale: window_end {result.window_end} is {now - result.window_end:.1f}s old"
        round_ = self.rounds.get(window)
        if round_ is None:
            round_ = self.rounds[window] = GroupRound(
                self.group,
                self.policy,
                window,
                opened_at=now,
                deadline=self.deadline,
                method=self.method,
                quorum=self.quorum,
                actions=self.actions,
                weighted=self.weighted,
                robust=self.robust,
            )
            if window in self._settled_early:
                round_.mark_settled()
        return round_.offer(result)

    def seen(self, outcome: Outcome, now: float, membership: Membership) -> str | None:
        """An outcome published on the wire (ourselves included); the reason it was refused,
        or None. Only the group's current leader settles a window, and only a window that
        has a round here or lies within one window of now: a forged outcome for a future
        window cannot stop the group from deciding it."""
        if outcome.group != self.group or outcome.policy != self.policy:
            return f"outcome of {outcome.group}/{outcome.policy}"
        if outcome.window is None:
            return "outcome without a window"
        leader = membership.leader(self.group)
        if outcome.leader not in (leader, self.agent_id):
            return f"outcome published by {outcome.leader!r}, the leader is {leader!r}"
        round_ = self.rounds.get(outcome.window)
        if round_ is not None:
            round_.mark_settled()
            return None
        current = window_of(now, self.every)
        if not current - 1 <= outcome.window <= current + 1:
            return f"outcome for window {outcome.window}, now is window {current}"
        if self.horizon is None or outcome.window > self.horizon:
            self._settled_early.add(outcome.window)
        return None

    def tick(self, now: float, membership: Membership) -> list[Outcome]:
        """Close the rounds that are due; return the outcomes this member must publish now
        (only ever at the leader), marked settled and stamped with ``leader``."""
        out: list[Outcome] = []
        for window in sorted(self.rounds):
            round_ = self.rounds[window]
            if round_.outcome is None and round_.due(now, membership):
                outcome = round_.close(now)
                if isinstance(outcome, NoDecision):
                    log.info(
                        "group %s, %s: no decision in window %d: %s",
                        self.group,
                        self.policy,
                        window,
                        outcome.reason,
                    )
            fresh = round_.closed_at is not None and now <= round_.closed_at + self.grace
            if fresh and round_.should_publish(self.agent_id, membership):
                round_.mark_settled()
                assert round_.outcome is not None
                out.append(replace(round_.outcome, leader=self.agent_id))
        self.published += len(out)
        self._prune(now)
        return out

    def _prune(self, now: float) -> None:
        for window in sorted(self.rounds):
            round_ = self.rounds[window]
            if round_.closed_at is None or now <= round_.closed_at + self.grace:
                continue
            if not round_.settled:
                self.expired += 1
                log.warning(
                    "group %s, %s: window %d was never published", self.group, self.policy, window
                )
            del self.rounds[window]
            self.horizon = window if self.horizon is None else max(self.horizon, window)
        oldest = window_of(now, self.every) - 2  # no round can open before it (see offer)
        if self.horizon is not None:
            oldest = max(oldest, self.horizon + 1)
        self._settled_early = {w for w in self._settled_early if w >= oldest}
