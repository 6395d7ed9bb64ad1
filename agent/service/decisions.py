"""Deciding at run time: features -> situation -> engine -> safety layer -> signed command.

Every decision is published as a result (SPEC 6) and recorded in the audit table, refusals
included (:mod:`agent.service.commands`); the engines themselves are built, gated and taught
by :mod:`agent.service.learning`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from agent.config import Config, PolicyConfig
from agent.errors import AgentError, NeedsModel
from agent.inference.worker import InferenceWorker
from agent.peers.aggregate import GroupDecision
from agent.pipeline.core import Pipeline
from agent.policy.digest import InputView, make_digest, zone
from agent.policy.engines import Answer, RulesEngine, Situation
from agent.policy.safety import Proposal, SafetyLayer, Verdict
from agent.service.commands import Sender
from agent.service.learning import Learning, PolicyState
from agent.service.modelcalls import ModelCalls
from agent.service.outbox import Outbox
from agent.storage import Store

log = logging.getLogger(__name__)


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
    """The policies of one configuration at run time; ``learning`` keeps their engines."""

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
        self.on_db = on_db
        self.store = store
        self.key = key
        self.clock = clock
        self.model = ModelCalls(worker, config.agent.data_dir, model_sha256)
        self.states = {
            p.name: PolicyState(p, RulesEngine(p), RulesEngine(p))
            for p in config.policies
            if p.targets
        }
        for st in self.states.values():
            st.engine = st.rules
            if st.policy.engine != "rules":
                st.gate = {"state": "pending"}
        self.learning = Learning(config, agent_id, self.states, self.model, on_db, store)
        self.send = Sender(agent_id=agent_id, prefix=self.prefix, key=key, outbox=outbox,
                           publish=publish, on_db=on_db, store=store)
        self.decisions = 0
        # diagnosis: True when a policy must hold off (a faulty input); set by the runtime
        self.hold: Callable[[PolicyConfig, str], bool] | None = None
        # the health of a policy's inputs, carried in its results (set with hold)
        self.input_health: Callable[[PolicyConfig], dict[str, str]] | None = None

    @property
    def worker(self) -> InferenceWorker | None:
        return self.model.worker

    @worker.setter
    def worker(self, worker: InferenceWorker | None) -> None:
        self.model.worker = worker

    @property
    def model_sha256(self) -> str | None:
        return self.model.model_sha256

    @property
    def stopping(self) -> bool:
        return self.learning.stopping

    @stopping.setter
    def stopping(self, stopping: bool) -> None:
        self.learning.stopping = stopping

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

    def run(
        self, name: str, trigger: str = "schedule", *, rules_only: bool = False
    ) -> dict[str, Any] | None:
        """Decide for policy ``name`` now; with ``rules_only``, raise :class:`NeedsModel` rather
        than call the model (the caller's thread must not wait for it)."""
        st = self.states.get(name)
        if st is None:
            return None
        if self.hold is not None and self.hold(st.policy, trigger):
            return None
        situation = self.situation(st.policy)
        if situation is None:
            log.info("policy %s: no recent reading of its targets; no decision", name)
            return None
        with st.lock:
            engine = st.engine
            if rules_only and engine is not st.rules:  # the gate passed since the caller looked
                raise NeedsModel(name)
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
        health = None if self.input_health is None else self.input_health(policy)
        self.send.result(policy, now, action, value, answer, self.model_sha256, health)
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
            command_id = self.send.command(
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
        self.send.audit(row)
        self.decisions += 1
        return row

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
        command_id = self.send.command(
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
        self.send.audit(row)

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
            command_id = self.send.command(
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
            self.send.audit(row)

    # -- what actuators report -----------------------------------------------------------------

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
