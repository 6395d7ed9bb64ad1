"""Federated rounds over MQTT, as pure message builders and handlers.

Extension of SPEC (compatible: new topics only), for a policy with ``peers: {group: G}``:

``{p}/groups/{G}/fl/{policy}/round`` -- coordinator -> members, QoS 1, retained::

    {"group", "policy", "session": "<hex, new for each federation>", "round": n,
     "attempt": a, "stage": "moments" | "train" | "final", "coordinator": "<agent>",
     "ts", "deadline": <seconds>, "members": [agents expected to answer],
     "secure": bool, "epochs": E, "lr": lr, "classes": [...], "dim": d,
     "mean": "<base64 float32 x d>" | null, "scale": ... | null,
     "weights": "<base64 float32, (d + 1) x classes: W row by row, then b>" | null}

``{p}/groups/{G}/fl/{policy}/update/{agent}`` -- member -> coordinator, QoS 1::

    {"group", "policy", "session", "round", "attempt", "stage", "agent",
     "count": n_k | null, "masked": bool, "data": "<base64>"}

    plain: data = float32 vector, count = the member's number of training examples;
    secure: data = uint64 fixed point ``[n_k v_k, n_k]`` plus pairwise masks; count null.

``{p}/groups/{G}/fl/{policy}/key/{agent}`` -- member -> members, QoS 1, retained:
``{"agent", "public": "<hex>"}``, its Diffie-Hellman public key for the pair masks.

The protocol. The coordinator is the group's leader (:meth:`Membership.leader`).

- Round 0, ``moments``: each listed member sends ``[mean x, mean x^2]`` of its embeddings;
  their count-weighted average gives the shared :class:`Standardizer`.
- Rounds 1..R, ``train``: the message carries the global parameters (zeros in round 1);
  each listed member trains E epochs from them on its own examples (differential privacy
  applied if configured) and sends the result; at the deadline, or as soon as every listed
  member answered, the coordinator averages what arrived, weighted by count (FedAvg), and
  publishes the next round with the new global. Members that missed the deadline are left
  out of that round. From round 2 on, and in ``final``, a member adopts the global weights
  only if its own held-out accuracy does not drop.
- Round R+1, ``final``: the last global; nobody answers.
- Secure aggregation: the masks only cancel if every listed member's update is in the sum,
  so a round with missing updates is not averaged; it is published again as the next
  ``attempt`` listing only the members that answered, who mask the same update again under
  new masks (fresh seeds for every attempt: two masked copies of one update differ by masks
  shared with other members, which the coordinator cannot compute). A member re-sends the
  update it computed for that round; it never trains or draws noise twice for a round. A
  secure round is averaged only over at least :data:`MIN_SECURE` members: with two, the
  coordinator (a member itself) could subtract its own update from the sum.
- A new coordinator (the leader died) resumes from the retained round message: the same
  round as the next attempt, with the members it sees online.
- Raw readings and embeddings never leave a member: only parameters, moments and counts.

Bounds (one member must not steer or stall the federation). Every round message announces
``"max_count"`` (compatible new field): an update claiming more examples is refused (an honest
member sends ``min(its count, max_count)``), as is one whose values are not finite or larger
than :data:`MAX_ABS`. With ``robust`` set, plain rounds are averaged coordinate-wise by
trimmed mean or median, ignoring the counts. A round that cannot be averaged is a failed
attempt (at most ``max_attempts``), never retried on every tick. Signatures and the agent in
the topic are checked by the service before a message reaches these handlers
(:mod:`agent.peers.trust`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from agent.errors import AgentError
from agent.peers import fedavg as fa
from agent.peers import wire
from agent.peers.robust import Robust
from agent.policy.head import SoftmaxHead

log = logging.getLogger(__name__)

Stage = Literal["moments", "train", "final"]
MIN_SECURE = 3
MAX_COUNT = 1 << 31  # no member has more examples than this; bigger claims are refused
MAX_ABS = 1e6  # no parameter or moment of an honest update is this large
STAGES: tuple[Stage, ...] = ("moments", "train", "final")


def round_topic(prefix: str, group: str, policy: str) -> str:
    return f"{prefix}/groups/{group}/fl/{policy}/round"


def update_topic(prefix: str, group: str, policy: str, agent: str) -> str:
    return f"{prefix}/groups/{group}/fl/{policy}/update/{agent}"


def key_topic(prefix: str, group: str, policy: str, agent: str) -> str:
    return f"{prefix}/groups/{group}/fl/{policy}/key/{agent}"


# -- messages -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoundMessage:
    group: str
    policy: str
    session: str
    round: int
    attempt: int
    stage: Stage
    coordinator: str
    ts: float
    deadline: float
    members: tuple[str, ...]
    secure: bool
    epochs: int
    lr: float
    classes: tuple[str, ...]
    dim: int
    mean: str | None = None
    scale: str | None = None
    weights: str | None = None
    size: int | None = None  # a vector federation: the length of its parameter vector
    max_count: int | None = None  # the most examples one member's update may claim

    @property
    def layout(self) -> fa.Layout:
        return fa.Layout(self.classes, self.dim)

    @property
    def weights_size(self) -> int:
        return self.layout.size if self.size is None else self.size

    def standardizer(self) -> fa.Standardizer:
        if self.mean is None or self.scale is None:
            raise AgentError(f"round {self.round} carries no standardisation")
        return fa.Standardizer(
            fa.decode_floats(self.mean, self.dim), fa.decode_floats(self.scale, self.dim)
        )

    def global_weights(self) -> fa.Array:
        if self.weights is None:
            raise AgentError(f"round {self.round} carries no weights")
        return fa.decode_floats(self.weights, self.weights_size)

    def head(self) -> SoftmaxHead:
        """The global weights as an ordinary (raw-space) head."""
        return fa.fold(self.global_weights(), self.layout, self.standardizer())

    @property
    def trained(self) -> bool:
        """The weights are an average of trained heads (not round 1's starting zeros)."""
        return self.weights is not None and (self.stage == "final" or self.round >= 2)

    def to_payload(self) -> bytes:
        data: dict[str, object] = {
            "group": self.group,
            "policy": self.policy,
            "session": self.session,
            "round": self.round,
            "attempt": self.attempt,
            "stage": self.stage,
            "coordinator": self.coordinator,
            "ts": self.ts,
            "deadline": self.deadline,
            "members": list(self.members),
            "secure": self.secure,
            "epochs": self.epochs,
            "lr": self.lr,
            "classes": list(self.classes),
            "dim": self.dim,
            "mean": self.mean,
            "scale": self.scale,
            "weights": self.weights,
        }
        if self.size is not None:
            data["size"] = self.size
        if self.max_count is not None:
            data["max_count"] = self.max_count
        return wire.dumps(data)


def _stage(data: dict[str, Any], what: str) -> Stage:
    stage = data.get("stage")
    for known in STAGES:
        if stage == known:
            return known
    raise AgentError(f"{what}: stage must be one of {', '.join(STAGES)}, got {stage!r}")


def _words(data: dict[str, Any], key: str, what: str) -> tuple[str, ...]:
    value = data.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise AgentError(f"{what}: {key} must be a list of names, got {value!r}")
    return tuple(value)


def _optional_text(data: dict[str, Any], key: str, what: str) -> str | None:
    return None if data.get(key) is None else wire.text(data, key, what)


def parse_round(payload: bytes) -> RoundMessage:
    what = "fl round"
    data = wire.load_object(payload, what)
    secure = data.get("secure")
    if not isinstance(secure, bool):
        raise AgentError(f"{what}: secure must be true or false, got {secure!r}")
    classes = _words(data, "classes", what)
    if not classes or len(set(classes)) != len(classes):
        raise AgentError(f"{what}: classes must be distinct and not empty, got {classes}")
    message = RoundMessage(
        group=wire.word(data, "group", what),
        policy=wire.word(data, "policy", what),
        session=wire.word(data, "session", what),
        round=wire.integer(data, "round", what),
        attempt=wire.integer(data, "attempt", what),
        stage=_stage(data, what),
        coordinator=wire.word(data, "coordinator", what),
        ts=wire.number(data, "ts", what),
        deadline=wire.number(data, "deadline", what),
        members=_words(data, "members", what),
        secure=secure,
        epochs=wire.integer(data, "epochs", what),
        lr=wire.number(data, "lr", what),
        classes=classes,
        dim=wire.integer(data, "dim", what, minimum=1),
        mean=_optional_text(data, "mean", what),
        scale=_optional_text(data, "scale", what),
        weights=_optional_text(data, "weights", what),
        size=None if data.get("size") is None else wire.integer(data, "size", what, minimum=1),
        max_count=None if data.get("max_count") is None
        else wire.integer(data, "max_count", what, minimum=1),
    )
    if message.size is not None:  # a vector federation: weights only, from round 1 on
        if message.stage == "moments" or message.weights is None:
            raise AgentError(f"{what}: a vector federation's round carries weights")
        message.global_weights()
    elif message.stage != "moments":  # decode once here, so that bad data fails at the edge
        message.standardizer()
        message.global_weights()
    return message


@dataclass(frozen=True, slots=True)
class UpdateMessage:
    group: str
    policy: str
    session: str
    round: int
    attempt: int
    stage: Stage
    agent: str
    count: int | None
    masked: bool
    data: str

    def to_payload(self) -> bytes:
        return wire.dumps(
            {
                "group": self.group,
                "policy": self.policy,
                "session": self.session,
                "round": self.round,
                "attempt": self.attempt,
                "stage": self.stage,
                "agent": self.agent,
                "count": self.count,
                "masked": self.masked,
                "data": self.data,
            }
        )


def parse_update(payload: bytes) -> UpdateMessage:
    what = "fl update"
    data = wire.load_object(payload, what)
    masked = data.get("masked")
    if not isinstance(masked, bool):
        raise AgentError(f"{what}: masked must be true or false, got {masked!r}")
    count = None if masked else wire.integer(data, "count", what, minimum=1)
    if count is not None and count > MAX_COUNT:
        raise AgentError(f"{what}: count {count} is not a number of examples")
    return UpdateMessage(
        group=wire.word(data, "group", what),
        policy=wire.word(data, "policy", what),
        session=wire.word(data, "session", what),
        round=wire.integer(data, "round", what),
        attempt=wire.integer(data, "attempt", what),
        stage=_stage(data, what),
        agent=wire.word(data, "agent", what),
        count=count,
        masked=masked,
        data=wire.text(data, "data", what),
    )


def key_payload(agent: str, keys: fa.KeyPair) -> bytes:
    return wire.dumps({"agent": agent, "public": keys.public_hex()})


def parse_key(payload: bytes) -> tuple[str, int]:
    data = wire.load_object(payload, "fl key")
    return wire.word(data, "agent", "fl key"), fa.parse_public(data.get("public"))


# -- coordinator ----------------------------------------------------------------------------


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


def _update_for(
    message: RoundMessage, agent: str, count: int | None, masked: bool, data: str
) -> UpdateMessage:
    return UpdateMessage(
        group=message.group,
        policy=message.policy,
        session=message.session,
        round=message.round,
        attempt=message.attempt,
        stage=message.stage,
        agent=agent,
        count=count,
        masked=masked,
        data=data,
    )


# -- member -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DpSettings:
    clip: float  # C: the L2 bound of one update
    sigma: float  # noise multiplier: the noise's standard deviation is sigma * C

    def __post_init__(self) -> None:
        if not self.clip > 0 or self.sigma < 0:
            raise AgentError(f"bad differential privacy settings: {self}")


class Member:
    """One agent's side of the federation: its examples never leave it."""

    def __init__(
        self,
        agent_id: str,
        x: fa.Array,
        labels: Sequence[str],
        heldout_x: fa.Array,
        heldout_labels: Sequence[str],
        *,
        head: SoftmaxHead | None = None,
        dp: DpSettings | None = None,
        rng: np.random.Generator | None = None,
        keys: fa.KeyPair | None = None,
        group_key: bytes | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.x = np.asarray(x, dtype=np.float64)
        self.labels = list(labels)
        self.heldout_x = np.asarray(heldout_x, dtype=np.float64)
        self.heldout_labels = list(heldout_labels)
        self.head = head
        self.dp = dp
        self.rng = rng if rng is not None else np.random.default_rng()
        self.keys = keys
        self.group_key = group_key
        self.publics: dict[str, int] = {}
        self._cache: dict[tuple[str, int], fa.Array] = {}  # (session, round) -> update
        self._considered: set[tuple[str, int]] = set()
        self.adopted = 0
        self.kept = 0

    def on_key(self, payload: bytes) -> None:
        agent, public = parse_key(payload)
        self.publics[agent] = public

    def on_round(self, payload: bytes) -> UpdateMessage | None:
        """Adopt better global weights; answer with an update if this member is asked."""
        message = parse_round(payload)
        if message.trained:
            self._consider(message)
        if message.stage == "final" or self.agent_id not in message.members:
            return None
        vector = self._update(message)
        return self._encode(message, vector)

    def _consider(self, message: RoundMessage) -> None:
        key = (message.session, message.round)
        if key in self._considered:
            return
        self._considered.add(key)
        candidate = message.head()
        if fa.accept(candidate, self.head, self.heldout_x, self.heldout_labels):
            self.head = candidate
            self.adopted += 1
        else:
            self.kept += 1

    def _update(self, message: RoundMessage) -> fa.Array:
        key = (message.session, message.round)
        if key not in self._cache:
            self._cache = {k: v for k, v in self._cache.items() if k[0] == message.session}
            self._cache[key] = self._compute(message)
        return self._cache[key]

    def _compute(self, message: RoundMessage) -> fa.Array:
        if message.stage == "moments":
            return fa.moments(self.x)
        start = message.global_weights()
        local = fa.train_from(
            start,
            message.layout,
            message.standardizer().apply(self.x),
            self.labels,
            epochs=message.epochs,
            lr=message.lr,
        )
        if self.dp is None:
            return local
        return fa.privatize(local, start, clip_norm=self.dp.clip, sigma=self.dp.sigma, rng=self.rng)

    def _encode(self, message: RoundMessage, vector: fa.Array) -> UpdateMessage | None:
        count = min(len(self.labels), message.max_count or MAX_COUNT)
        if not message.secure:
            return _update_for(message, self.agent_id, count, False, fa.encode_floats(vector))
        seed_for = self._seeds(message)
        if seed_for is None:
            return None
        masked = fa.mask(fa.secure_payload(vector, count), self.agent_id, message.members, seed_for)
        return _update_for(message, self.agent_id, None, True, fa.encode_u64(masked))

    def _seeds(self, message: RoundMessage) -> Callable[[str], bytes] | None:
        context = (
            f"{message.group}/{message.policy}/{message.session}/{message.round}/{message.attempt}"
        )
        if self.group_key is not None:
            group_key = self.group_key
            return lambda other: fa.group_key_seed(group_key, self.agent_id, other, context)
        missing = [m for m in message.members if m != self.agent_id and m not in self.publics]
        if self.keys is None or missing:
            log.warning(
                "fl round %d: no key for %s; cannot mask",
                message.round,
                ", ".join(missing) or "this agent",
            )
            return None
        keys = self.keys
        return lambda other: fa.dh_seed(keys, self.agent_id, other, self.publics[other], context)


class VectorMember:
    """A member of a vector federation (parameters that are not a decision head: a LoRA
    adapter's weights, say). ``train(start, message)`` returns this member's parameters after
    its local training from the global ``start``; ``score(vector)`` is their quality on its own
    held-out data (higher is better). The final global vector is adopted only if it scores no
    lower than what this member has (``current``); scoring can be slow, so only the final
    round is scored. Plain FedAvg only: a secure round is not answered."""

    def __init__(
        self,
        agent_id: str,
        count: int,
        train: Callable[[fa.Array, RoundMessage], fa.Array],
        score: Callable[[fa.Array], float],
        *,
        current: float | None = None,
        dp: DpSettings | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        if count < 1:
            raise AgentError("a member needs at least one training example")
        self.agent_id = agent_id
        self.count = count
        self.train = train
        self.score = score
        self.current = current
        self.dp = dp
        self.rng = rng if rng is not None else np.random.default_rng()
        self.vector: fa.Array | None = None  # the adopted global parameters
        self.final: RoundMessage | None = None
        self.final_score: float | None = None
        self._cache: dict[tuple[str, int], fa.Array] = {}

    @property
    def adopted(self) -> bool:
        return self.vector is not None

    def on_round(self, payload: bytes) -> UpdateMessage | None:
        message = parse_round(payload)
        if message.size is None:
            raise AgentError("not a vector federation's round")
        if message.stage == "final":
            self._consider(message)
            return None
        if self.agent_id not in message.members:
            return None
        if message.secure:
            log.warning("fl round %d: secure rounds of a vector federation are not supported; "
                        "not answered", message.round)
            return None
        key = (message.session, message.round)
        if key not in self._cache:
            self._cache = {k: v for k, v in self._cache.items() if k[0] == message.session}
            start = message.global_weights()
            local = np.asarray(self.train(start, message), dtype=np.float64)
            if local.shape != start.shape or not np.all(np.isfinite(local)):
                raise AgentError(f"local training returned {local.shape} (or non-finite) "
                                 f"weights for {start.shape}")
            if self.dp is not None:
                local = fa.privatize(local, start, clip_norm=self.dp.clip, sigma=self.dp.sigma,
                                     rng=self.rng)
            self._cache[key] = local
        count = min(self.count, message.max_count or MAX_COUNT)
        return _update_for(message, self.agent_id, count, False,
                           fa.encode_floats(self._cache[key]))

    def _consider(self, message: RoundMessage) -> None:
        if self.final is not None and self.final.session == message.session:
            return
        self.final = message
        candidate = message.global_weights()
        self.final_score = self.score(candidate)
        if self.current is None or self.final_score >= self.current:
            self.vector = candidate
            self.current = self.final_score
