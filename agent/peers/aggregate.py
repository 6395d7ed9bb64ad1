"""Peers' results (SPEC 6) -> one group decision, by the mean of the scores or by a vote.

Every member of a group computes the decision from the same results and must get the same
answer, whatever order the results arrived in: sums are :func:`math.fsum` (correctly rounded,
so independent of order), members are sorted by id, and every tie has a fixed rule.

- ``mean``: ``y = sum_i w_i y_i / sum_i w_i`` over the members' score vectors, with
  ``w_i = 1`` (that is ``1/N sum y_i``) or, when weighted, ``w_i = confidence_i`` (all
  confidences 0 falls back to equal weights). The action is the highest ``y``; an exact tie
  goes to the action listed first in the policy.
- ``vote``: each member's own action gets ``w_i`` (1, or its confidence when weighted). The
  action with the most votes wins; a tie goes to the tied action with the larger sum of the
  members' scores for it, and a tie in that too to the action listed first in the policy.
  The decision's ``scores`` are the vote shares.
- ``value``: the mean of the values of the members whose own action is the group's action
  and who gave one; None if none did.
- ``health`` (an optional result field, ``{input: "ok" | "suspect" | "faulty"}``): a member
  that says one of its inputs is faulty is left out (``left_out`` of the decision) and the
  quorum counts only the others. A member can only leave itself out this way: its result is
  its own (the topic, the signature), so a forged health cannot drop another member, and a
  result claiming "ok" weighs what any result did before.
- Fewer results than ``quorum``: :class:`NoDecision` with the reason.
- ``robust`` (``peers.robust``, method ``mean`` only): the scores are the coordinate-wise
  median or trimmed mean of the members' scores (:mod:`agent.peers.robust`), renormalised to
  sum 1, so that a few members cannot outvote the rest by extreme scores.

Wire (SPEC 6, ``{p}/decisions/{policy}``, QoS 1, retained): ``policy, ts, action, value,
scores, members, method, quorum``. Added (compatible, new fields): ``group``, ``window`` (the
round's window index, see :mod:`agent.peers.group`), so that a member taking over from a dead
leader can tell which windows were already decided, and ``leader`` (the member that
published it). A missed decision goes to ``{p}/decisions/{policy}/none`` (QoS 1, not
retained) as ``policy, ts, action: null, reason, members, method, quorum, group, window,
leader``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from agent.errors import AgentError
from agent.peers import wire
from agent.peers.robust import Robust

Method = Literal["mean", "vote"]
METHODS: tuple[Method, ...] = ("mean", "vote")
SUM_TOLERANCE = 1e-6
HEALTH_STATES = ("ok", "suspect", "faulty")
MAX_HEALTH_INPUTS = 64  # a result names at most this many inputs


@dataclass(frozen=True, slots=True)
class Result:
    """One member's decision for one policy (SPEC 6); ``group`` is an optional extension."""

    agent: str
    policy: str
    ts: float
    window_end: float
    action: str
    value: float | None
    confidence: float
    scores: Mapping[str, float]
    model_sha256: str | None = None
    group: str | None = None
    health: Mapping[str, str] = field(default_factory=dict)  # input -> ok / suspect / faulty

    @property
    def faulty(self) -> bool:
        """The member says one of the inputs it decided on is faulty."""
        return "faulty" in self.health.values()


def parse_result(payload: bytes | str) -> Result:
    """A result from the wire, or :class:`AgentError` saying what is wrong with it."""
    data = wire.load_object(payload, "result")
    what = "result"
    ts = wire.number(data, "ts", what)
    window_end = wire.optional_number(data, "window_end", what)
    scores = _scores(data.get("scores"))
    action = wire.text(data, "action", what)
    if action not in scores:
        raise AgentError(f"result: action {action!r} is not one of the scores {sorted(scores)}")
    confidence = wire.number(data, "confidence", what)
    if not 0.0 <= confidence <= 1.0:
        raise AgentError(f"result: confidence must lie in [0, 1], got {confidence!r}")
    sha = data.get("model_sha256")
    if sha is not None and not isinstance(sha, str):
        raise AgentError(f"result: model_sha256 must be a string or null, got {sha!r}")
    return Result(
        agent=wire.word(data, "agent", what),
        policy=wire.word(data, "policy", what),
        ts=ts,
        window_end=ts if window_end is None else window_end,
        action=action,
        value=wire.optional_number(data, "value", what),
        confidence=confidence,
        scores=scores,
        model_sha256=sha,
        group=None if data.get("group") is None else wire.word(data, "group", what),
        health=_health(data.get("health")),
    )


def _health(raw: object) -> dict[str, str]:
    """The optional ``health`` of a result's inputs; anything malformed refuses the result."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > MAX_HEALTH_INPUTS:
        raise AgentError(f"result: health must be an object of at most {MAX_HEALTH_INPUTS} "
                         f"inputs, got {str(raw)[:80]!r}")
    for name, state in raw.items():
        if len(name) > 200 or state not in HEALTH_STATES:
            raise AgentError(f"result: health of {name[:80]!r} must be ok, suspect or faulty, "
                             f"got {str(state)[:80]!r}")
    return dict(raw)


def _scores(raw: object) -> dict[str, float]:
    if not isinstance(raw, dict) or not raw:
        raise AgentError(f"result: scores must be a non-empty object, got {raw!r}")
    scores = {}
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise AgentError(f"result: score of {name!r} must be a number, got {value!r}")
        if not (math.isfinite(value) and value >= 0):
            raise AgentError(f"result: score of {name!r} must be finite and >= 0, got {value!r}")
        scores[name] = float(value)
    total = math.fsum(scores.values())
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise AgentError(f"result: scores must sum to 1, got {total!r}")
    return scores


@dataclass(frozen=True, slots=True)
class GroupDecision:
    policy: str
    ts: float
    action: str
    value: float | None
    scores: dict[str, float]
    members: tuple[str, ...]
    method: Method
    quorum: int
    group: str | None = None
    window: int | None = None
    leader: str | None = None  # the member that published it
    left_out: tuple[str, ...] = ()  # members whose inputs are faulty

    @property
    def decision_id(self) -> str:
        return decision_id(self.group, self.policy, self.window)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "ts": self.ts,
            "action": self.action,
            "value": self.value,
            "scores": dict(self.scores),
            "members": list(self.members),
            "method": self.method,
            "quorum": self.quorum,
            "group": self.group,
            "window": self.window,
            "leader": self.leader,
            **({"left_out": list(self.left_out)} if self.left_out else {}),
        }

    def to_payload(self) -> bytes:
        return wire.dumps(self.to_dict())


@dataclass(frozen=True, slots=True)
class NoDecision:
    policy: str
    ts: float
    reason: str
    members: tuple[str, ...]
    method: Method
    quorum: int
    group: str | None = None
    window: int | None = None
    leader: str | None = None
    left_out: tuple[str, ...] = ()
    action: None = field(default=None, init=False)

    @property
    def decision_id(self) -> str:
        return decision_id(self.group, self.policy, self.window)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "ts": self.ts,
            "action": None,
            "reason": self.reason,
            "members": list(self.members),
            "method": self.method,
            "quorum": self.quorum,
            "group": self.group,
            "window": self.window,
            "leader": self.leader,
            **({"left_out": list(self.left_out)} if self.left_out else {}),
        }

    def to_payload(self) -> bytes:
        return wire.dumps(self.to_dict())


Outcome = GroupDecision | NoDecision


def decision_id(group: str | None, policy: str, window: int | None) -> str:
    """The same id at every member for one group decision: a leader that takes over derives
    the same command id (and nonce) as the one that died, so an actuator that already got the
    command refuses the second copy as a replay."""
    key = f"{group or ''}/{policy}/{'' if window is None else window}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def parse_outcome(payload: bytes | str) -> Outcome:
    """A decision or a missed decision as published by :meth:`GroupDecision.to_payload` or
    :meth:`NoDecision.to_payload` (what a member needs to know that a window was settled)."""
    data = wire.load_object(payload, "decision")
    what = "decision"
    method = data.get("method")
    if method not in METHODS:
        raise AgentError(f"decision: method must be mean or vote, got {method!r}")
    members = _agents(data.get("members"), "members")
    window = data.get("window")
    if window is not None:
        window = wire.integer(data, "window", what, minimum=-(2**63))
    common: dict[str, Any] = {
        "policy": wire.word(data, "policy", what),
        "ts": wire.number(data, "ts", what),
        "members": members,
        "method": method,
        "quorum": wire.integer(data, "quorum", what, minimum=1),
        "group": None if data.get("group") is None else wire.word(data, "group", what),
        "window": window,
        "leader": None if data.get("leader") is None else wire.word(data, "leader", what),
        "left_out": _agents(data.get("left_out", []), "left_out"),
    }
    if data.get("action") is None:
        return NoDecision(reason=wire.text(data, "reason", what), **common)
    scores = data.get("scores")
    if not isinstance(scores, dict):
        raise AgentError(f"decision: scores must be an object, got {scores!r}")
    return GroupDecision(
        action=wire.text(data, "action", what),
        value=wire.optional_number(data, "value", what),
        scores={str(k): wire.number(scores, k, what) for k in scores},
        **common,
    )


def _agents(raw: object, key: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(m, str) for m in raw):
        raise AgentError(f"decision: {key} must be a list of agent ids, got {raw!r}")
    return tuple(raw)


def aggregate(
    results: Sequence[Result],
    method: Method,
    quorum: int,
    actions: Sequence[str],
    *,
    weighted: bool = False,
    policy: str | None = None,
    ts: float | None = None,
    robust: Robust | None = None,
) -> Outcome:
    """The group's decision from at most one result per member (see the module docstring).

    ``actions`` is the policy's action list, in its order (the tie-break). ``ts`` defaults to
    the latest ``window_end`` among the results, so every member computes the same payload.
    """
    name = _check(results, method, quorum, actions, policy)
    everyone = sorted(results, key=lambda r: r.agent)
    when = ts if ts is not None else max((r.window_end for r in everyone), default=0.0)
    ordered = [r for r in everyone if not r.faulty]
    left_out = tuple(r.agent for r in everyone if r.faulty)
    members = tuple(r.agent for r in ordered)
    if len(ordered) < quorum:
        reason = f"{len(ordered)} result(s) by the deadline, quorum is {quorum}"
        if left_out:
            reason += f" ({len(left_out)} more left out: their inputs are faulty)"
        return NoDecision(name, when, reason, members, method, quorum, left_out=left_out)
    weights = _weights(ordered, weighted)
    if method == "mean":
        scores = _mean(ordered, weights, actions)
        if robust is not None:
            scores = _robust_mean(ordered, actions, robust) or scores
        action = _best(actions, scores, dict.fromkeys(actions, 0.0))
    else:
        pairs = list(zip(ordered, weights, strict=True))
        tally = {a: math.fsum(w for r, w in pairs if r.action == a) for a in actions}
        total = math.fsum(tally.values())
        scores = {a: tally[a] / total for a in actions}
        mass = {a: math.fsum(r.scores[a] for r in ordered) for a in actions}
        action = _best(actions, tally, mass)
    values = [r.value for r in ordered if r.action == action and r.value is not None]
    value = math.fsum(values) / len(values) if values else None
    return GroupDecision(name, when, action, value, scores, members, method, quorum,
                         left_out=left_out)


def _check(
    results: Sequence[Result],
    method: str,
    quorum: int,
    actions: Sequence[str],
    policy: str | None,
) -> str:
    if method not in METHODS:
        raise AgentError(f"method must be mean or vote, got {method!r}")
    if quorum < 1:
        raise AgentError(f"quorum must be at least 1, got {quorum}")
    if not actions or len(set(actions)) != len(actions):
        raise AgentError(f"actions must be distinct and not empty, got {list(actions)}")
    names = {r.policy for r in results} | ({policy} if policy else set())
    if not names:
        raise AgentError("no results and no policy named")
    if len(names) != 1:
        raise AgentError(f"results of one policy are aggregated at a time, got {sorted(names)}")
    agents = [r.agent for r in results]
    if len(set(agents)) != len(agents):
        raise AgentError(f"at most one result per member, got {sorted(agents)}")
    for r in results:
        if set(r.scores) != set(actions):
            raise AgentError(
                f"result of {r.agent}: scores over {sorted(r.scores)}, the policy has "
                f"{sorted(actions)}"
            )
    return names.pop()


def _weights(results: Sequence[Result], weighted: bool) -> list[float]:
    if weighted and math.fsum(r.confidence for r in results) > 0:
        return [r.confidence for r in results]
    return [1.0] * len(results)


def _mean(
    results: Sequence[Result], weights: list[float], actions: Sequence[str]
) -> dict[str, float]:
    total = math.fsum(weights)
    pairs = list(zip(results, weights, strict=True))
    return {a: math.fsum(w * r.scores[a] for r, w in pairs) / total for a in actions}


def _robust_mean(
    results: Sequence[Result], actions: Sequence[str], robust: Robust
) -> dict[str, float] | None:
    """Coordinate-wise robust scores, renormalised to sum 1 (None if they are all zero)."""
    rows = np.array([[r.scores[a] for a in actions] for r in results], dtype=np.float64)
    combined = [float(v) for v in robust.combine(rows)]
    total = math.fsum(combined)
    if not total > 0:
        return None
    return {a: v / total for a, v in zip(actions, combined, strict=True)}


def _best(actions: Sequence[str], primary: Mapping[str, float], second: Mapping[str, float]) -> str:
    order = {a: i for i, a in enumerate(actions)}
    return max(actions, key=lambda a: (primary[a], second[a], -order[a]))
