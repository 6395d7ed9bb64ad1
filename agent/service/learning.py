"""What the policies learn: their engines built and gated, the embed heads trained, cached and
installed, people's overrides kept as labels, and a member's data for federated learning.

Each policy starts on its ``rules`` engine and moves to ``embed`` or ``llm`` only once that
engine has passed its fitness gate (self-test cases generated from the policy's own band), so
the agent acts from the first minute and never silently runs a worse engine.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import logging
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.config import Config, FederatedConfig, PolicyConfig
from agent.errors import AgentError
from agent.inference.adapters import adapter_for, policy_target
from agent.policy import examples as gen
from agent.policy.digest import InputView, Zone, describe, fixed_part
from agent.policy.engines import EmbedEngine, Engine, LlmEngine, RulesEngine, Situation, accuracy
from agent.policy.head import SoftmaxHead
from agent.service.modelcalls import ModelCalls
from agent.storage import Store

log = logging.getLogger(__name__)

TRAIN_EXAMPLES = 240
GATE_CASES = 60
HEAD_VERSION = 4  # bump when the example generator, the digest or the head changes
BUNDLED_HEADS = Path(__file__).resolve().parents[2] / "config" / "heads"


@dataclass(frozen=True)
class FlData:
    """A member's own embedded examples and held-out cases for federated learning."""

    x: np.ndarray
    labels: list[str]
    heldout_x: np.ndarray
    heldout_labels: list[str]


@dataclass
class PolicyState:
    policy: PolicyConfig
    rules: RulesEngine
    engine: Engine
    gate: dict[str, Any] = field(default_factory=dict)
    last_zone: Zone | None = None
    last_digest: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def status(self) -> dict[str, Any]:
        return {"engine": self.engine.name, "requested": self.policy.engine, **self.gate}


def situation_of(example: gen.Example) -> Situation:
    return Situation(example.digest, example.value, example.band, example.zone)


def head_file(config: Config, policy: PolicyConfig, model_sha256: str | None) -> str:
    """The head's file name: a hash of all that its training depends on (not of the
    schedule or the safety limits, so those can change without retraining)."""
    actuator = policy.actuators[0]
    quantities = sorted({i.split("/")[1] for i in policy.inputs})
    spec = json.dumps(
        [
            HEAD_VERSION,
            model_sha256,
            policy.inputs,
            policy.targets,
            actuator.actions,
            None if actuator.responses is None else actuator.responses.model_dump(),
            {
                q: config.sensors[q].model_dump(mode="json", include={"unit", "range"})
                for q in quantities
                if q in config.sensors
            },
        ],
        sort_keys=True,
    )
    return f"{policy.name}-{hashlib.sha256(spec.encode()).hexdigest()[:16]}.json"


def _embed_as_fixed(text: str, model: Any) -> Any:
    return model.embed(text, text)


def live_fixed_part(config: Config, policy: PolicyConfig) -> str:
    """The fixed part of the policy's digests as the decisions write them (their first input
    named "device quantity", with its band)."""
    device, quantity = policy.inputs[0].split("/")
    sensor = config.sensors.get(quantity)
    view = InputView(f"{device} {quantity}", 0.0, None if sensor is None else sensor.unit,
                     policy.targets.get(policy.inputs[0]))
    return fixed_part(describe(view))


class Learning:
    """Engines, gates and heads of one configuration's policies (``states``, shared with the
    decisions, which read each policy's engine under its lock)."""

    def __init__(
        self,
        config: Config,
        agent_id: str,
        states: Mapping[str, PolicyState],
        model: ModelCalls,
        on_db: Callable[[Callable[[], Any]], Future[Any]],
        store: Store,
    ) -> None:
        self.config = config
        self.agent_id = agent_id
        self.states = states
        self.model = model
        self.on_db = on_db
        self.store = store
        self.stopping = False

    @property
    def model_sha256(self) -> str | None:
        return self.model.model_sha256

    def retrain(self) -> None:
        """Retrain ``embed`` heads that have new labels (people overriding an actuator), and
        swap a new head in only if it passes the fitness gate."""
        for st in self.states.values():
            if st.policy.engine != "embed" or self.stopping:
                continue
            labels = self.labels(st.policy.name)
            if labels == st.gate.get("labels", 0):
                continue
            log.info("policy %s: %d labelled examples; retraining its head", st.policy.name, labels)
            self.head_path(st.policy).unlink(missing_ok=True)
            self.prepare([st.policy.name])

    def labels(self, policy: str) -> int:
        """People's labels for ``policy``; 0 for now when the database thread is too busy to
        count them (a backlog of readings comes first; the next retrain counts again)."""
        try:
            return len(self.on_db(lambda: self.store.examples(policy)).result(timeout=120))
        except concurrent.futures.TimeoutError:
            log.warning("policy %s: the database was too busy to count its labels", policy)
            return 0

    def prepare(self, names: list[str] | None = None) -> None:
        """Build the model engines and gate them (slow: run off the start-up path)."""
        for st in self.states.values():
            if st.policy.engine == "rules" or (names is not None and st.policy.name not in names):
                continue
            try:
                engine = self._build(st.policy)
                cases = [
                    (situation_of(e), e.action)
                    for e in gen.generate(self.config, st.policy, GATE_CASES, seed=7919)
                ]
                score = accuracy(engine, cases)
            except AgentError as exc:
                if self.stopping:
                    return
                st.gate = {"state": "failed", "reason": str(exc)}
                log.error(
                    "policy %s: engine %s unavailable (%s); running on rules",
                    st.policy.name,
                    st.policy.engine,
                    exc,
                )
                continue
            self._gate(st, engine, score, len(cases))
        self._warm()

    def _gate(self, st: PolicyState, engine: Engine, score: float, cases: int) -> None:
        passed = score >= st.policy.min_accuracy
        st.gate = {
            "state": "passed" if passed else "failed",
            "accuracy": round(score, 4),
            "cases": cases,
            "min_accuracy": st.policy.min_accuracy,
            "labels": self.labels(st.policy.name),
        }
        if passed:
            with st.lock:
                st.engine = engine
            log.info(
                "policy %s: engine %s passed its fitness gate (%.0f%% on %d cases)",
                st.policy.name,
                engine.name,
                100 * score,
                cases,
            )
        else:
            log.warning(
                "policy %s: engine %s scored %.0f%% < min_accuracy %.0f%% on its "
                "self-test; running on rules",
                st.policy.name,
                engine.name,
                100 * score,
                100 * st.policy.min_accuracy,
            )

    def _warm(self) -> None:
        """Evaluate the fixed part of the live digests of every policy on ``embed`` now (the
        gates' cases have other names and push them out of the model's small cache), so that
        the next decision evaluates only the changing rest."""
        for st in self.states.values():
            fixed = live_fixed_part(self.config, st.policy) if st.engine.name == "embed" else ""
            if not fixed or self.stopping:
                continue
            try:  # on the model itself: the cache of whole texts would answer without it
                self.model.call(functools.partial(_embed_as_fixed, fixed))
            except AgentError as exc:
                log.warning("policy %s: cannot evaluate its digest's fixed part: %s",
                            st.policy.name, exc)

    def _build(self, policy: PolicyConfig) -> Engine:
        if policy.engine == "llm":
            # a tuned LoRA adapter (edge-agent tune) for this policy, if one is installed
            target = policy_target(policy.name)
            adapter = adapter_for(self.config.agent.data_dir, target, self.model_sha256)
            if adapter is not None:
                log.info("policy %s: llm engine with tuned adapter %s", policy.name, adapter.name)
            return LlmEngine(policy, self.model.chat, self.model.scorer(adapter))
        return EmbedEngine(self.head_for(policy), self.model.embed)

    def head_path(self, policy: PolicyConfig) -> Path:
        return (
            self.config.agent.data_dir / "heads" / head_file(self.config, policy, self.model_sha256)
        )

    def head_for(self, policy: PolicyConfig) -> SoftmaxHead:
        """The policy's head: cached in data_dir, else trained on generated examples plus the
        labels people gave by overriding an actuator."""
        path = self.head_path(policy)
        if path.exists():
            return SoftmaxHead.from_json(path.read_text())
        shipped = BUNDLED_HEADS / path.name  # trained here on the same generated examples
        if shipped.exists() and not self.labels(policy.name):
            return SoftmaxHead.from_json(shipped.read_text())
        return self.train_head(policy)

    def train_head(self, policy: PolicyConfig) -> SoftmaxHead:
        started = time.monotonic()
        train = gen.generate(self.config, policy, TRAIN_EXAMPLES, seed=1)
        pairs = [(e.digest, e.action) for e in train]
        pairs += self.on_db(lambda: self.store.examples(policy.name)).result(timeout=30)
        x = np.array([self.model.embed(d) for d, _ in pairs])
        head = SoftmaxHead.fit(x, [a for _, a in pairs], list(policy.actuators[0].actions))
        self._keep(policy, head)
        log.info(
            "policy %s: trained its head on %d examples in %.1fs",
            policy.name,
            len(pairs),
            time.monotonic() - started,
        )
        return head

    def _keep(self, policy: PolicyConfig, head: SoftmaxHead) -> None:
        path = self.head_path(policy)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(head.to_json())
        tmp.replace(path)

    # -- federated learning -------------------------------------------------------------------

    def federation_data(self, policy: PolicyConfig, fed: FederatedConfig) -> FlData:
        """This member's own data for federated learning, embedded: examples generated from its
        own policy with a seed of its own plus the labels its people gave, and held-out cases
        (the fitness gate's). They never leave the device; the embeddings are cached in
        ``data_dir/fl`` so a restart does not embed them again."""
        seed = zlib.crc32(self.agent_id.encode()) or 1
        train = [(e.digest, e.action) for e in gen.generate(self.config, policy, fed.examples,
                                                                seed=seed)]
        train += self.on_db(lambda: self.store.examples(policy.name)).result(timeout=30)
        heldout = [(e.digest, e.action)
                   for e in gen.generate(self.config, policy, fed.heldout, seed=7919)]
        texts = [d for d, _ in train + heldout]
        key = hashlib.sha256(json.dumps([self.model_sha256, texts]).encode()).hexdigest()[:16]
        cache = self.config.agent.data_dir / "fl" / f"{policy.name}-{key}.npy"
        try:
            vectors = np.load(cache)
            assert vectors.shape[0] == len(texts)
        except (OSError, ValueError, AssertionError):
            started = time.monotonic()
            vectors = np.array([self.model.embed(t) for t in texts])
            cache.parent.mkdir(parents=True, exist_ok=True)
            for old in cache.parent.glob(f"{policy.name}-*.npy"):
                old.unlink(missing_ok=True)
            tmp = cache.with_suffix(".tmp")
            with tmp.open("wb") as out:
                np.save(out, vectors)
            tmp.replace(cache)
            log.info("policy %s: embedded %d examples for federated learning in %.0fs",
                     policy.name, len(texts), time.monotonic() - started)
        n = len(train)
        return FlData(vectors[:n], [a for _, a in train], vectors[n:], [a for _, a in heldout])

    def install_head(self, name: str, head: SoftmaxHead, score: float, source: str) -> bool:
        """Swap in a head learned elsewhere (a federation's), if it passes the fitness gate
        (``score``: its accuracy on this agent's held-out cases); it is kept across restarts."""
        st = self.states[name]
        if score < st.policy.min_accuracy:
            log.warning("policy %s: %s head scored %.0f%% < min_accuracy %.0f%%; not used",
                        name, source, 100 * score, 100 * st.policy.min_accuracy)
            return False
        self._keep(st.policy, head)
        with st.lock:
            st.engine = EmbedEngine(head, self.model.embed)
        st.gate = {
            "state": "passed",
            "accuracy": round(score, 4),
            "cases": st.policy.peers.federated.heldout if st.policy.peers and
            st.policy.peers.federated else GATE_CASES,
            "min_accuracy": st.policy.min_accuracy,
            "labels": self.labels(name),
            "source": source,
        }
        log.info("policy %s: now deciding with the %s head (%.0f%% on its held-out cases)",
                 name, source, 100 * score)
        return True


def train_heads(
    config: Config,
    embed: Callable[[str], np.ndarray],
    out_dir: Path,
    model_sha256: str,
    echo: Callable[[str], None],
) -> list[Path]:
    """Train every ``embed`` policy's head ahead of time, exactly as the agent does at its
    first start (generated examples only), into ``out_dir`` under the agent's file names."""
    written = []
    for policy in config.policies:
        if policy.engine != "embed" or not policy.targets:
            continue
        started = time.monotonic()
        train = gen.generate(config, policy, TRAIN_EXAMPLES, seed=1)
        x = np.array([embed(e.digest) for e in train])
        head = SoftmaxHead.fit(x, [e.action for e in train], list(policy.actuators[0].actions))
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / head_file(config, policy, model_sha256)
        path.write_text(head.to_json())
        written.append(path)
        echo(
            f"{policy.name}: trained on {len(train)} examples in "
            f"{time.monotonic() - started:.0f}s -> {path}"
        )
    return written
