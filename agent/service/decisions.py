"""Policies at run time: features -> digest -> engine -> safety -> signed command -> outbox.

Each policy starts on its ``rules`` engine and moves to ``embed`` or ``llm`` only once that
engine has passed its fitness gate (self-test cases generated from the policy's own band), so
the agent acts from the first minute and never silently runs a worse engine. Every decision
is published as a result (SPEC 6) and recorded in the audit table, refusals included.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.config import Config, FederatedConfig, PolicyConfig
from agent.errors import AgentError
from agent.inference.adapters import INTENTS, adapter_for, policy_target
from agent.inference.worker import InferenceWorker
from agent.peers.aggregate import GroupDecision
from agent.pipeline.core import Pipeline
from agent.policy import examples as gen
from agent.policy.digest import InputView, Zone, make_digest, zone
from agent.policy.engines import (
    Answer,
    EmbedEngine,
    Engine,
    LlmEngine,
    RulesEngine,
    Situation,
    accuracy,
)
from agent.policy.head import SoftmaxHead
from agent.policy.safety import Proposal, SafetyLayer, Verdict
from agent.policy.signing import make_command
from agent.service.outbox import Outbox
from agent.storage import Store

log = logging.getLogger(__name__)

TRAIN_EXAMPLES = 240
GATE_CASES = 60
DECIDE_TIMEOUT = 20.0
HEAD_VERSION = 3  # bump when the example generator or the head changes
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


def value_for(policy: PolicyConfig, action: str, band: tuple[float, float]) -> float | None:
    """The setpoint sent with an action: the band's middle, inside the actuator's range."""
    actuator = policy.actuators[0]
    respond = actuator.responses
    if (actuator.value is None or action not in actuator.takes_value
            or (respond is not None and action == respond.inside)):
        return None
    middle = (band[0] + band[1]) / 2
    return round(min(max(middle, actuator.value.min), actuator.value.max), 2)


class DecisionService:
    def __init__(
        self,
        config: Config,
        *,
        agent_id: str,
        pipeline: Pipeline,
        safety: SafetyLayer,
        outbox: Outbox,
        publish: Callable[..., Any],
        on_db: Callable[[Callable[[], Any]], Future[Any]],
        store: Store,
        worker: InferenceWorker | None,
        key: bytes,
        model_sha256: str | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.agent_id = agent_id
        self.prefix = config.mqtt.prefix
        self.pipeline = pipeline
        self.safety = safety
        self.outbox = outbox
        self.publish = publish
        self.on_db = on_db
        self.store = store
        self.worker = worker
        self.key = key
        self.model_sha256 = model_sha256
        self.clock = clock
        self.states = {
            p.name: PolicyState(p, RulesEngine(p), RulesEngine(p))
            for p in config.policies
            if p.targets
        }
        for st in self.states.values():
            st.engine = st.rules
            if st.policy.engine != "rules":
                st.gate = {"state": "pending"}
        self.decisions = 0
        self.stopping = False

    def restore_history(self) -> int:
        """Tell the safety layer what was sent in the last hour, so that a restart neither
        repeats a command nor forgets a rate limit."""
        rows = self.on_db(lambda: self.store.outbox_since(self.clock() - 3600)).result(timeout=30)
        for row in rows:
            try:
                cmd = json.loads(row.payload)
                self.safety.record_sent(
                    cmd["device"], cmd["actuator"], cmd["action"], cmd["value"], float(cmd["ts"])
                )
            except (ValueError, KeyError, TypeError):
                log.warning("outbox row %s is unreadable; skipped", row.id)
        return len(rows)

    # -- engines and the fitness gate ---------------------------------------------------------

    def _call(self, fn: Callable[[Any], Any]) -> Any:
        if self.worker is None:
            raise AgentError("no model loaded")
        return self.worker.call(fn, DECIDE_TIMEOUT)

    def embed(self, text: str) -> np.ndarray:
        vector: np.ndarray = self._call(lambda m: m.embed(text))
        return vector

    def retrain(self) -> None:
        """Retrain ``embed`` heads that have new labels (people overriding an actuator), and
        swap a new head in only if it passes the fitness gate."""
        for st in self.states.values():
            if st.policy.engine != "embed" or self.stopping:
                continue
            labels = self._labels(st.policy.name)
            if labels == st.gate.get("labels", 0):
                continue
            log.info("policy %s: %d labelled examples; retraining its head", st.policy.name, labels)
            self.head_path(st.policy).unlink(missing_ok=True)
            self.prepare([st.policy.name])

    def _labels(self, policy: str) -> int:
        return len(self.on_db(lambda: self.store.examples(policy)).result(timeout=30))

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
            passed = score >= st.policy.min_accuracy
            st.gate = {
                "state": "passed" if passed else "failed",
                "accuracy": round(score, 4),
                "cases": len(cases),
                "min_accuracy": st.policy.min_accuracy,
                "labels": self._labels(st.policy.name),
            }
            if passed:
                with st.lock:
                    st.engine = engine
                log.info(
                    "policy %s: engine %s passed its fitness gate (%.0f%% on %d cases)",
                    st.policy.name,
                    engine.name,
                    100 * score,
                    len(cases),
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

    def _build(self, policy: PolicyConfig) -> Engine:
        if policy.engine == "llm":
            # a tuned LoRA adapter (edge-agent tune) for this policy, if one is installed
            target = policy_target(policy.name)
            adapter = adapter_for(self.config.agent.data_dir, target, self.model_sha256)
            if adapter is not None:
                log.info("policy %s: llm engine with tuned adapter %s", policy.name, adapter.name)

            def score(p: str, s: str, o: Sequence[str]) -> list[float]:
                def run(m: Any) -> list[float]:
                    with m.adapter(adapter):
                        scores: list[float] = m.score(p, s, o)
                        return scores

                result: list[float] = self._call(run)
                return result

            return LlmEngine(policy, lambda s, u: self._call(lambda m: m.chat(s, u)), score)
        return EmbedEngine(self.head_for(policy), self.embed)

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
        if shipped.exists() and not self._labels(policy.name):
            return SoftmaxHead.from_json(shipped.read_text())
        return self.train_head(policy)

    def train_head(self, policy: PolicyConfig) -> SoftmaxHead:
        started = time.monotonic()
        train = gen.generate(self.config, policy, TRAIN_EXAMPLES, seed=1)
        pairs = [(e.digest, e.action) for e in train]
        pairs += self.on_db(lambda: self.store.examples(policy.name)).result(timeout=30)
        x = np.array([self.embed(d) for d, _ in pairs])
        head = SoftmaxHead.fit(x, [a for _, a in pairs], list(policy.actuators[0].actions))
        path = self.head_path(policy)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(head.to_json())
        tmp.replace(path)
        log.info(
            "policy %s: trained its head on %d examples in %.1fs",
            policy.name,
            len(pairs),
            time.monotonic() - started,
        )
        return head

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
            vectors = np.array([self.embed(t) for t in texts])
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
        path = self.head_path(st.policy)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(head.to_json())
        tmp.replace(path)
        with st.lock:
            st.engine = EmbedEngine(head, self.embed)
        st.gate = {
            "state": "passed",
            "accuracy": round(score, 4),
            "cases": st.policy.peers.federated.heldout if st.policy.peers and
            st.policy.peers.federated else GATE_CASES,
            "min_accuracy": st.policy.min_accuracy,
            "labels": self._labels(name),
            "source": source,
        }
        log.info("policy %s: now deciding with the %s head (%.0f%% on its held-out cases)",
                 name, source, 100 * score)
        return True

    # -- deciding -----------------------------------------------------------------------------

    def _views(self, policy: PolicyConfig) -> list[InputView] | None:
        windows = self.pipeline.windows
        views = []
        for inp in policy.inputs:
            device, quantity = inp.split("/")
            now = self.clock()
            last = self.pipeline.features(device, quantity, windows[0], now)
            trend = self.pipeline.features(device, quantity, windows[min(1, len(windows) - 1)], now)
            if last is None:
                if inp in policy.targets:
                    return None  # no recent reading of what the policy keeps in its band
                continue
            views.append(
                InputView(
                    f"{device} {quantity}",
                    last.last,
                    last.unit,
                    policy.targets.get(inp),
                    trend.slope_per_min if trend else None,
                )
            )
        return views

    def situation(self, policy: PolicyConfig) -> Situation | None:
        views = self._views(policy)
        if views is None:
            return None
        primary = next(v for v in views if v.band is not None)
        assert primary.band is not None
        return Situation(
            make_digest(views), primary.value, primary.band, zone(primary.value, primary.band)
        )

    def on_reading(self, device: str, quantity: str, clean: float) -> str | None:
        """Called for every stored reading: the policy to run now if an input crossed its band."""
        key = f"{device}/{quantity}"
        for st in self.states.values():
            band = st.policy.targets.get(key)
            if band is None:
                continue
            z = zone(clean, band)
            crossed = st.last_zone is not None and z != st.last_zone
            st.last_zone = z
            if crossed:
                return st.policy.name
        return None

    def run(self, name: str, trigger: str = "schedule") -> dict[str, Any] | None:
        st = self.states.get(name)
        if st is None:
            return None
        situation = self.situation(st.policy)
        if situation is None:
            log.info("policy %s: no recent reading of its targets; no decision", name)
            return None
        with st.lock:
            engine = st.engine
            try:
                answer = engine.decide(situation)
            except AgentError as exc:
                log.warning(
                    "policy %s: %s engine failed (%s); deciding by rules", name, engine.name, exc
                )
                engine, answer = st.rules, st.rules.decide(situation)
            if engine is not st.rules:
                st.rules.previous = answer.action
        return self._act(st.policy, situation, engine.name, answer, trigger)

    def _act(
        self, policy: PolicyConfig, situation: Situation, engine: str, answer: Answer, trigger: str
    ) -> dict[str, Any]:
        now = self.clock()
        action = answer.action
        value = value_for(policy, action, situation.band)
        actuator = policy.actuators[0]
        self._publish_result(policy, now, action, value, answer)
        if policy.name in self.states:
            self.states[policy.name].last_digest = situation.digest
        decision_id = uuid.uuid4().hex
        if policy.peers is not None:  # the group decides; its leader sends the one command
            verdict, command_id = Verdict(False, "group decision", kind="group"), None
        else:
            verdict = self.safety.reserve(
                Proposal(policy.name, actuator.device, actuator.actuator, action, value),
                now,
                self.reading,
            )
            command_id = self._command(
                policy,
                actuator.device,
                actuator.actuator,
                action,
                verdict,
                decision_id,
                situation.digest,
                now,
            )
        row = {
            "decision_id": decision_id,
            "ts": now,
            "policy": policy.name,
            "engine": engine,
            "digest": situation.digest,
            "model_sha256": self.model_sha256,
            "prompt_hash": answer.prompt_hash,
            "raw_output": answer.raw,
            "scores": json.dumps(answer.scores),
            "action": action,
            "value": value,
            "verdict": "ok" if verdict.allowed else verdict.reason,
            "command_id": command_id,
            "source": trigger,
        }
        self.on_db(lambda: self.store.audit_add(row))
        self.decisions += 1
        return row

    def _command(
        self,
        policy: PolicyConfig,
        device: str,
        actuator: str,
        action: str,
        verdict: Verdict,
        decision_id: str,
        reason: str,
        now: float,
        derived: bool = False,
    ) -> str | None:
        if not verdict.allowed:
            log.info(
                "policy %s: %s %s/%s refused: %s",
                policy.name,
                action,
                device,
                actuator,
                verdict.reason,
            )
            return None
        command = make_command(
            device=device,
            actuator=actuator,
            action=action,
            value=verdict.value,
            policy=policy.name,
            agent=self.agent_id,
            reason=reason,
            key=self.key,
            now=now,
            ttl=policy.safety.command_ttl,
            # a group decision has the same command id and nonce at every member
            command_id=decision_id if derived else None,
            nonce=hashlib.sha256(f"nonce/{decision_id}".encode()).hexdigest()[:16]
            if derived
            else None,
        )
        topic = f"{self.prefix}/actuators/{device}/{actuator}/set"
        if not self.outbox.send(command, decision_id, topic):  # reserved by the caller
            return None
        log.info(
            "policy %s: sent %s %s to %s/%s",
            policy.name,
            action,
            "" if verdict.value is None else verdict.value,
            device,
            actuator,
        )
        return str(command["id"])

    def _publish_result(
        self, policy: PolicyConfig, now: float, action: str, value: float | None, answer: Answer
    ) -> None:
        every = policy.every
        result: dict[str, Any] = {
            "agent": self.agent_id,
            "policy": policy.name,
            "ts": now,
            # a peered policy's window ends on a multiple of `every`, the same at every member
            "window_end": now if policy.peers is None else math.floor(now / every) * every,
            "action": action,
            "value": value,
            "confidence": answer.scores[action],
            "scores": answer.scores,
            "model_sha256": self.model_sha256,
        }
        if policy.peers is not None:
            result["group"] = policy.peers.group
        topic = f"{self.prefix}/agents/{self.agent_id}/results/{policy.name}"
        self.publish(topic, json.dumps(result, separators=(",", ":")).encode(), qos=1)

    def act_group(self, decision: GroupDecision) -> None:
        """This member leads the group: the group's decision through the safety layer, then
        the command under the decision's own id."""
        policy = next(p for p in self.config.policies if p.name == decision.policy)
        actuator = policy.actuators[0]
        now = self.clock()
        verdict = self.safety.reserve(
            Proposal(
                policy.name, actuator.device, actuator.actuator, decision.action, decision.value
            ),
            now,
            self.reading,
        )
        group = f"[group {decision.group}: {decision.method} of {len(decision.members)}]"
        own = self.states[policy.name].last_digest if policy.name in self.states else ""
        reason = f"{own[: 198 - len(group)]} {group}".strip()
        command_id = self._command(
            policy,
            actuator.device,
            actuator.actuator,
            decision.action,
            verdict,
            decision.decision_id,
            reason,
            now,
            derived=True,
        )
        row = {
            "decision_id": f"group/{decision.decision_id}",
            "ts": now,
            "policy": policy.name,
            "engine": f"group-{decision.method}",
            "digest": reason,
            "model_sha256": self.model_sha256,
            "prompt_hash": None,
            "raw_output": "",
            "scores": json.dumps(decision.scores),
            "action": decision.action,
            "value": decision.value,
            "verdict": "ok" if verdict.allowed else verdict.reason,
            "command_id": command_id,
            "source": "group",
        }
        self.on_db(lambda: self.store.audit_add(row))

    def reading(self, device: str, quantity: str) -> float | None:
        f = self.pipeline.features(device, quantity, max(self.pipeline.windows))
        return None if f is None else f.last

    def enforce_interlocks(self) -> None:
        """Send what a when/then interlock requires while its condition holds."""
        now = self.clock()
        for proposal in self.safety.forced(now, self.reading):
            verdict = self.safety.reserve(proposal, now, self.reading)
            decision_id = uuid.uuid4().hex
            policy = next(p for p in self.config.policies if p.name == proposal.policy)
            reason = f"interlock: {proposal.device}/{proposal.actuator} must be {proposal.action}"
            command_id = self._command(
                policy,
                proposal.device,
                proposal.actuator,
                proposal.action,
                verdict,
                decision_id,
                reason,
                now,
            )
            row = {
                "decision_id": decision_id,
                "ts": now,
                "policy": policy.name,
                "engine": "interlock",
                "digest": reason,
                "model_sha256": None,
                "prompt_hash": None,
                "raw_output": "",
                "scores": "{}",
                "action": proposal.action,
                "value": None,
                "verdict": "ok" if verdict.allowed else verdict.reason,
                "command_id": command_id,
                "source": "interlock",
            }
            self.on_db(lambda r=row: self.store.audit_add(r))  # type: ignore[misc]

    # -- what actuators report, and the model for intents -------------------------------------

    def on_state(
        self, device: str, actuator: str, action: str, value: float | None, command_id: object
    ) -> None:
        """An actuator's state (SPEC 5). A change that no command caused is a person overriding
        us: a label for the situation at that moment, kept for the next head training."""
        previous = self.safety.reported(device, actuator)
        self.safety.record_state(device, actuator, action, value)
        if command_id is not None or previous is None or previous == action:
            return
        for st in self.states.values():
            if (
                st.policy.actuators[0].key == f"{device}/{actuator}"
                and action in st.policy.actuators[0].actions
            ):
                situation = self.situation(st.policy)
                if situation is None:
                    continue
                log.info(
                    "policy %s: %s/%s overridden to %s; kept as a labelled example",
                    st.policy.name,
                    device,
                    actuator,
                    action,
                )
                self.on_db(
                    lambda p=st.policy.name, d=situation.digest: self.store.example_add(  # type: ignore[misc]
                        self.clock(), p, d, action, "override"
                    )
                )

    def generate(self, system: str, user: str, grammar: str) -> str:
        """The model's answer to an intent under its grammar (agent.service.intents)."""
        # the adapter of edge-agent tune --intents, if one is installed for this base model
        adapter = adapter_for(self.config.agent.data_dir, INTENTS, self.model_sha256)

        def run(model: Any) -> str:
            with model.adapter(adapter):
                prefix, suffix = model.chat(system, user)
                text: str = model.generate(prefix, suffix, grammar=grammar, max_tokens=64)
                return text

        text: str = self._call(run)
        return text


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
