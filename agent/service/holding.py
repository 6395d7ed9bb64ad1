"""A policy whose input is faulty holds off: its actuator goes to the safe action once (through
the safety layer, signed and audited like any command), and it decides again when the input
is healthy."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from agent.config import PolicyConfig
from agent.policy.safety import Proposal
from agent.service.health import HealthService, safe_action

if TYPE_CHECKING:
    from agent.service.decisions import DecisionService


def held(decisions: DecisionService, health: HealthService, policy: PolicyConfig,
         trigger: str) -> bool:
    """True when ``policy`` must not decide now (it is paused; the safe action is sent if the
    actuator is not in it yet)."""
    why = health.hold(policy)
    action = safe_action(decisions.config, policy)
    health.pause_changed(policy, why, action)
    if why is None:
        return False
    actuator = policy.actuators[0]
    if action == "hold" or decisions.safety.reported(actuator.device, actuator.actuator) == action:
        return True
    now = decisions.clock()
    key, state = why
    verdict = decisions.safety.check(
        Proposal(policy.name, actuator.device, actuator.actuator, action, None), now,
        decisions.reading,
    )
    decision_id = uuid.uuid4().hex
    reason = f"paused: {key} {state.fault}"
    command_id = decisions.send.command(policy, actuator.device, actuator.actuator, action,
                                        verdict, decision_id, reason, now)
    row = {
        "decision_id": decision_id, "ts": now, "policy": policy.name, "engine": "diagnosis",
        "digest": reason, "model_sha256": None, "prompt_hash": None,
        "raw_output": state.explanation, "scores": "{}", "action": action, "value": None,
        "verdict": "ok" if verdict.allowed else verdict.reason, "command_id": command_id,
        "source": trigger,
    }
    decisions.send.audit(row)
    return True
