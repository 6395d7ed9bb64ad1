"""Federated rounds over MQTT: the protocol, its topics and messages (parse and build).

The coordinator's side is :mod:`agent.peers.coordinator`, a member's :mod:`agent.peers.member`.

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

from dataclasses import dataclass
from typing import Any, Literal

from agent.errors import AgentError
from agent.peers import fedavg as fa
from agent.peers import wire
from agent.policy.head import SoftmaxHead

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


def update_for(
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
