"""A member of a federation: trains on its own examples (which never leave it) and answers
rounds, plainly or masked; the protocol is in :mod:`agent.peers.rounds`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from agent.errors import AgentError
from agent.peers import fedavg as fa
from agent.peers.rounds import (
    MAX_COUNT,
    RoundMessage,
    UpdateMessage,
    parse_key,
    parse_round,
    update_for,
)
from agent.policy.head import SoftmaxHead

log = logging.getLogger(__name__)


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
            return update_for(message, self.agent_id, count, False, fa.encode_floats(vector))
        seed_for = self._seeds(message)
        if seed_for is None:
            return None
        masked = fa.mask(fa.secure_payload(vector, count), self.agent_id, message.members, seed_for)
        return update_for(message, self.agent_id, None, True, fa.encode_u64(masked))

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
        return update_for(message, self.agent_id, count, False,
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
