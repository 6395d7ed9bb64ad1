"""The coordinator of a federation (the group's leader): issues rounds, collects and averages
updates, retries, resumes; the protocol is in :mod:`agent.peers.rounds`."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from agent.errors import AgentError
from agent.peers import fedavg as fa
from agent.peers.robust import Robust
from agent.peers.rounds import (
    MAX_ABS,
    MAX_COUNT,
    MIN_SECURE,
    RoundMessage,
    Stage,
    UpdateMessage,
    parse_update,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FlSettings:
    rounds: int = 10  # training rounds R
    epochs: int = 30  # local epochs E per round
    lr: float = 0.5
    deadline: float = 30.0  # seconds a round waits for updates
    secure: bool = False
    max_attempts: int = 3  # a round nobody (or, when secure, too few) answers is tried again
    max_count: int = 100_000  # announced in every round: the most one update may claim
    robust: Robust | None = None  # coordinate-wise robust average instead of FedAvg by count

    def __post_init__(self) -> None:
        bad = self.rounds < 1 or self.epochs < 1 or self.max_attempts < 1 or self.max_count < 1
        bad = bad or (self.secure and self.robust is not None)
        if bad or not self.lr > 0 or not self.deadline > 0:
            raise AgentError(f"bad federated settings: {self}")


@dataclass
class RoundStats:
    round: int
    attempt: int
    stage: Stage
    expected: tuple[str, ...]
    down_bytes: int
    up_bytes: dict[str, int] = field(default_factory=dict)
    averaged: bool = False


class Coordinator:
    """Runs one federation for one policy's group; :meth:`tick` returns the next message."""

    def __init__(
        self,
        agent_id: str,
        group: str,
        policy: str,
        classes: Sequence[str],
        dim: int,
        settings: FlSettings,
        *,
        session: str | None = None,
        size: int | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.settings = settings
        self.current: RoundMessage = RoundMessage(
            group=group,
            policy=policy,
            session=session or secrets.token_hex(8),
            round=0,
            attempt=0,
            stage="moments",
            coordinator=agent_id,
            ts=0.0,
            deadline=settings.deadline,
            members=(),
            secure=settings.secure,
            epochs=settings.epochs,
            lr=settings.lr,
            classes=tuple(classes),
            dim=dim,
            size=size,
            max_count=min(settings.max_count, MAX_COUNT),
        )
        self.started_at = 0.0
        self.updates: dict[str, UpdateMessage] = {}
        self.history: list[RoundStats] = []
        self.done = False
        self.failed: str | None = None  # why the federation stopped before its final round
        self.failures = 0  # failed attempts of the current round

    def start(
        self, now: float, members: Sequence[str], initial: fa.Array | None = None
    ) -> RoundMessage:
        """Round 0 (moments) of a head federation; round 1 from ``initial`` of a vector one."""
        first = replace(self.current, ts=now, members=tuple(sorted(members)))
        if self.current.size is not None:
            if initial is None or len(initial) != self.current.size:
                raise AgentError(f"a vector federation starts from {self.current.size} weights")
            first = replace(first, round=1, stage="train", weights=fa.encode_floats(initial))
        return self._issue(first, now)

    def resume(self, last: RoundMessage, now: float, members: Sequence[str]) -> RoundMessage:
        """Take over a federation from its retained round message (the old coordinator died)."""
        self.settings = replace(self.settings, secure=last.secure, epochs=last.epochs, lr=last.lr,
                                robust=None if last.secure else self.settings.robust)
        self.done = last.stage == "final"
        resumed = replace(
            last,
            max_count=self.current.max_count,
            attempt=last.attempt + 1,
            coordinator=self.agent_id,
            ts=now,
            members=tuple(sorted(members)),
        )
        return self._issue(resumed, now)

    def _issue(self, message: RoundMessage, now: float) -> RoundMessage:
        self.current = message
        self.started_at = now
        self.updates = {}
        self.history.append(
            RoundStats(
                message.round,
                message.attempt,
                message.stage,
                message.members,
                len(message.to_payload()),
            )
        )
        return message

    def on_update(self, payload: bytes, now: float) -> str | None:
        """Take one member's update; the reason it was refused, or None."""
        update = parse_update(payload)
        cur = self.current
        if (update.group, update.policy, update.session) != (cur.group, cur.policy, cur.session):
            return "update for another federation"
        if (update.round, update.attempt) != (cur.round, cur.attempt) or self.done:
            return f"late: update for round {update.round}.{update.attempt}"
        if update.agent not in cur.members:
            return f"{update.agent} is not listed in round {cur.round}"
        if update.agent in self.updates:
            return f"second update of {update.agent}"
        if update.masked != cur.secure or update.stage != cur.stage:
            return "update does not match the round (masked or stage)"
        if update.count is not None and cur.max_count is not None and (
            update.count > cur.max_count
        ):
            return f"count {update.count} of {update.agent} is above the round's {cur.max_count}"
        self._decode(update)  # refuse undecodable data now (AgentError), not at the deadline
        self.updates[update.agent] = update
        self.history[-1].up_bytes[update.agent] = len(payload)
        return None

    def _size(self) -> int:
        cur = self.current
        return 2 * cur.dim if cur.stage == "moments" else cur.weights_size

    def _decode(self, update: UpdateMessage) -> fa.Array | fa.U64:
        if update.masked:
            return fa.decode_u64(update.data, self._size() + 1)
        values = fa.decode_floats(update.data, self._size())
        if values.size and float(np.abs(values).max()) > MAX_ABS:
            raise AgentError(f"a value is larger than {MAX_ABS:g}")
        return values

    def due(self, now: float) -> bool:
        if not self.history or self.done:  # not started, or over
            return False
        arrived = set(self.updates) >= set(self.current.members)
        return arrived or now >= self.started_at + self.current.deadline

    def tick(self, now: float, members: Sequence[str]) -> RoundMessage | None:
        """The next round message when the current round is due, else None. ``members``:
        the group's online members now (who is asked again after a failed attempt)."""
        if not self.due(now):
            return None
        cur = self.current
        try:
            average = self._average()
        except (AgentError, ArithmeticError, ValueError) as exc:
            # a failed round is a failed attempt: it counts towards max_attempts like a
            # round without enough updates, so it never repeats every tick
            log.warning("fl %s/%s round %d.%d: cannot average: %s", cur.group, cur.policy,
                        cur.round, cur.attempt, exc)
            average = None
            self.updates = {}
        if average is None:
            self.failures += 1
            if self.failures >= self.settings.max_attempts:
                self.done = True
                self.failed = f"round {cur.round}: too few updates in {self.failures} attempts"
                log.warning("fl %s/%s stopped: %s", cur.group, cur.policy, self.failed)
                return None
            answered = sorted(self.updates)
            retry = answered if cur.secure and len(answered) >= MIN_SECURE else sorted(members)
            log.info(
                "fl %s/%s round %d.%d: %d of %d updates, asking again",
                cur.group,
                cur.policy,
                cur.round,
                cur.attempt,
                len(self.updates),
                len(cur.members),
            )
            return self._issue(
                replace(cur, attempt=cur.attempt + 1, ts=now, members=tuple(retry)), now
            )
        self.history[-1].averaged = True
        self.failures = 0
        return self._issue(self._next(average, now, members), now)

    def _average(self) -> fa.Array | None:
        cur = self.current
        if not self.updates:
            return None
        if cur.secure:
            if set(self.updates) != set(cur.members) or len(self.updates) < MIN_SECURE:
                return None  # the masks of the missing members would not cancel
            total = fa.sum_masked(
                [fa.decode_u64(u.data, self._size() + 1) for u in self.updates.values()]
            )
            average, count = fa.secure_average(total)
            limit = (cur.max_count or MAX_COUNT) * len(self.updates)
            if count > limit or not np.all(np.abs(average) <= MAX_ABS):
                raise AgentError(f"the masked sum claims {count} examples (at most {limit}) "
                                 f"or values above {MAX_ABS:g}")
            return average
        ordered = [self.updates[a] for a in sorted(self.updates)]
        vectors = [fa.decode_floats(u.data, self._size()) for u in ordered]
        if self.settings.robust is not None:
            return self.settings.robust.combine(np.stack(vectors))
        return fa.fedavg(vectors, [u.count or 0 for u in ordered])

    def _next(self, average: fa.Array, now: float, members: Sequence[str]) -> RoundMessage:
        cur = self.current
        base = replace(cur, attempt=0, ts=now, members=tuple(sorted(members)))
        if cur.stage == "moments":
            std = fa.Standardizer.from_moments(average)
            return replace(
                base,
                round=1,
                stage="train",
                mean=fa.encode_floats(std.mean),
                scale=fa.encode_floats(std.scale),
                weights=fa.encode_floats(cur.layout.zeros()),
            )
        stage: Stage = "final" if cur.round >= self.settings.rounds else "train"
        self.done = stage == "final"
        return replace(base, round=cur.round + 1, stage=stage, weights=fa.encode_floats(average))
