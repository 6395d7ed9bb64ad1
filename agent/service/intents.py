"""Natural-language intents (SPEC 7): a request -> its reply, a command only through the safety
layer, and for actuators with ``confirm`` (locks, valves) only after a confirmation round-trip.

The reply keeps SPEC 7's shape. A request for a ``confirm`` actuator is answered with
``"ok": false`` (nothing was done, so an old client never thinks it acted), an ``error`` that
starts with ``"confirmation needed"`` and a ``confirm`` object carrying a one-time token; the
same requester id sends ``{"id": …, "confirm": "<token>"}`` (``text`` optional, and if given
it must be the same words) within ``intents.confirm_ttl`` to have it done.

Runs on the one intent worker (agent.service.intentqueue), so the confirmation book needs no lock.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from agent.config import Config
from agent.errors import AgentError
from agent.nlu.check import check_answer
from agent.nlu.pipeline import Understander
from agent.nlu.result import Ambiguity, Command, NoMatch, Refusal
from agent.policy.confirm import Confirmations, Pending
from agent.policy.intents import Registry, Target, resolve
from agent.policy.safety import Proposal
from agent.policy.signing import make_command
from agent.service.decisions import DecisionService

log = logging.getLogger(__name__)

COMMAND_TTL = 30.0


def requester_of(request_id: object) -> str:
    """The requester id as one string, whatever JSON the caller used for it."""
    return json.dumps(request_id, sort_keys=True, ensure_ascii=False)[:200]


def refusal(request_id: object, error: str) -> dict[str, Any]:
    return {"id": request_id, "ok": False, "command": None, "error": error[:200]}


def log_confirming(config: Config) -> None:
    """Say once at start which actuators now need a confirmation round-trip."""
    keys = sorted(
        {a.key for p in config.policies for a in p.actuators if a.needs_confirmation}
    )
    if keys:
        log.info(
            "intents for %s need confirmation: the reply carries a one-time token, valid %gs, "
            'that the caller sends back as "confirm" (set confirm: false on an actuator in '
            "policies[].actuators to act at once)",
            ", ".join(keys),
            config.intents.confirm_ttl,
        )


class IntentHandler:
    def __init__(
        self,
        decisions: Callable[[], DecisionService | None],
        registry: Callable[[], Registry],
        confirmations: Confirmations,
    ) -> None:
        self._decisions = decisions
        self._registry = registry
        self.confirmations = confirmations
        self._understood: tuple[Registry, Understander] | None = None
        # people's answers on a sensor's health ("the kitchen thermometer is fine"): a reply,
        # or None when the text is no such answer (agent.service.health)
        self.diagnosis: Callable[[object, str], dict[str, Any] | None] | None = None

    def handle(self, payload: bytes) -> dict[str, Any]:
        """A request (SPEC 7) -> its reply."""
        try:
            request = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            return refusal(None, f"bad request: {exc}")
        if not isinstance(request, dict):
            return refusal(None, "bad request: not a JSON object")
        request_id, text, token = request.get("id"), request.get("text"), request.get("confirm")
        if "id" not in request:
            return refusal(None, "bad request: no id")
        if text is not None and not isinstance(text, str):
            return refusal(request_id, "bad request: text must be a string")
        if token is not None and not isinstance(token, str):
            return refusal(request_id, "bad request: confirm must be the token, a string")
        decisions = self._decisions()
        if decisions is None:
            return refusal(request_id, "this agent has no policies")
        try:
            if token is not None:
                return self._confirmed(decisions, request_id, token, text)
            if text is None:
                return refusal(request_id, "bad request: no text")
            answered = None if self.diagnosis is None else self.diagnosis(request_id, text)
            if answered is not None:
                return answered
            return self._asked(decisions, request_id, text)
        except AgentError as exc:
            return refusal(request_id, str(exc))

    def _asked(self, decisions: DecisionService, request_id: object, text: str) -> dict[str, Any]:
        """Templates first (agent.nlu); the model only for what no template matched, and its
        answer only if it agrees with the request's own words."""
        registry = self._registry()
        understood = self._understander(registry, decisions).understand(text)
        if isinstance(understood, Refusal):
            return refusal(request_id, understood.reason)
        if isinstance(understood, Ambiguity):
            return refusal(request_id, understood.question)
        raw = json.dumps({"layer": getattr(understood, "layer", "model")})
        if isinstance(understood, NoMatch):
            intent = resolve(text, registry, decisions.model.generate)
            if not intent.ok or intent.target is None or intent.action is None:
                return refusal(request_id, intent.error or "could not understand the request")
            act = intent.target.actuator
            value = intent.value if isinstance(intent.value, (int, float)) else None
            checked = check_answer(understood, act.device, act.actuator, intent.action, value)
            if isinstance(checked, Refusal):
                return refusal(request_id, f"not done: {checked.reason}")
            understood, raw = checked, intent.raw
        targets = {t.actuator.key: t for t in registry.targets}
        replies = [self._one(decisions, request_id, targets[f"{c.device}/{c.actuator}"], c,
                             text, raw) for c in understood.commands]
        if len(replies) == 1:
            return replies[0]
        sent = [r for r in replies if r["ok"]]  # "the kitchen lights": the first as SPEC 7's
        return {**(sent[0] if sent else replies[0]), "commands": [r["command"] for r in sent]}

    def _one(self, decisions: DecisionService, request_id: object, target: Target,
             command: Command, text: str, raw: str) -> dict[str, Any]:
        act = target.actuator
        proposal = Proposal(target.policy, act.device, act.actuator, command.action,
                            command.value, "intent")
        if not act.needs_confirmation:
            return self._send(decisions, request_id, proposal, text, raw)
        # a look only: nobody is asked to confirm what would be refused anyway
        verdict = decisions.safety.check(proposal, decisions.clock(), decisions.reading)
        if not verdict.allowed:
            return refusal(request_id, verdict.reason)
        pending = self.confirmations.issue(requester_of(request_id), proposal, text, raw)
        return self._ask_confirmation(request_id, pending, target.label, verdict.value)

    def _understander(self, registry: Registry, decisions: DecisionService) -> Understander:
        """Built once per registry (start, SIGHUP): the templates of the configured languages."""
        if self._understood is None or self._understood[0] is not registry:
            actuators = [
                {"device": t.actuator.device, "actuator": t.actuator.actuator,
                 "name": t.actuator.name, "aliases": list(t.actuator.aliases),
                 "actions": list(t.actuator.actions),
                 "value": None if t.actuator.value is None else t.actuator.value.model_dump()}
                for t in registry.targets
            ]
            self._understood = (registry, Understander(decisions.config.intents, actuators))
        return self._understood[1]

    def _ask_confirmation(
        self, request_id: object, pending: Pending, label: str, value: float | None
    ) -> dict[str, Any]:
        p = pending.proposal
        shown = p.action if value is None else f"{p.action} {value:g}"
        prompt = f"{shown.capitalize()} the {label}? Send the token back as confirm to do it."
        return {
            "id": request_id,
            "ok": False,
            "command": None,
            "error": f"confirmation needed: {shown} {label}",
            "confirm": {
                "token": pending.token,
                "expires": pending.expires,
                "prompt": prompt,
                "device": p.device,
                "actuator": p.actuator,
                "action": p.action,
                "value": value,
            },
        }

    def _confirmed(
        self, decisions: DecisionService, request_id: object, token: str, text: str | None
    ) -> dict[str, Any]:
        pending = self.confirmations.redeem(requester_of(request_id), token, text)
        if isinstance(pending, str):
            log.warning("intent %s: confirmation refused: %s", requester_of(request_id), pending)
            return refusal(request_id, pending)
        return self._send(decisions, request_id, pending.proposal, pending.text, pending.raw)

    def _send(
        self,
        decisions: DecisionService,
        request_id: object,
        proposal: Proposal,
        text: str,
        raw: str,
    ) -> dict[str, Any]:
        now = decisions.clock()
        verdict = decisions.safety.reserve(proposal, now, decisions.reading)
        if not verdict.allowed:
            return refusal(request_id, verdict.reason)
        decision_id = uuid.uuid4().hex
        command = make_command(
            device=proposal.device,
            actuator=proposal.actuator,
            action=proposal.action,
            value=verdict.value,
            policy=proposal.policy,
            agent=decisions.agent_id,
            reason=f"intent: {text}",
            key=decisions.key,
            now=now,
            ttl=COMMAND_TTL,
        )
        topic = f"{decisions.prefix}/actuators/{proposal.device}/{proposal.actuator}/set"
        decisions.outbox.send(command, decision_id, topic)
        row = {
            "decision_id": decision_id,
            "ts": now,
            "policy": proposal.policy,
            "engine": "intent",
            "digest": text[:500],
            "model_sha256": decisions.model_sha256,
            "prompt_hash": None,
            "raw_output": raw,
            "scores": "{}",
            "action": proposal.action,
            "value": verdict.value,
            "verdict": "ok",
            "command_id": command["id"],
            "source": "intent",
        }
        decisions.on_db(lambda: decisions.store.audit_add(row))
        return {"id": request_id, "ok": True, "command": command, "error": None}
