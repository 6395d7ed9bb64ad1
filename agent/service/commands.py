"""What a decision sends: its result (SPEC 6) to the group and dashboards, a signed command
through the outbox when the safety layer allowed one, and its row in the audit table."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from agent.config import PolicyConfig
from agent.policy.engines import Answer
from agent.policy.safety import Verdict
from agent.policy.signing import make_command
from agent.service.outbox import Outbox
from agent.storage import Store

log = logging.getLogger(__name__)


class Sender:
    """Publishes results, signs and queues commands, writes audit rows for one agent."""

    def __init__(
        self,
        *,
        agent_id: str,
        prefix: str,
        key: bytes,
        outbox: Outbox,
        publish: Callable[..., Any],
        on_db: Callable[[Callable[[], Any]], Future[Any]],
        store: Store,
    ) -> None:
        self.agent_id = agent_id
        self.prefix = prefix
        self.key = key
        self.outbox = outbox
        self.publish = publish
        self.on_db = on_db
        self.store = store

    def command(
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
        """Sign and send the command the verdict allows (its id), or log the refusal (None)."""
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

    def result(
        self,
        policy: PolicyConfig,
        now: float,
        action: str,
        value: float | None,
        answer: Answer,
        model_sha256: str | None,
        health: dict[str, str] | None = None,
    ) -> None:
        """Publish this agent's decision (SPEC 6): what its group aggregates, with the health
        of the inputs it decided on (a group leaves out a member whose input is faulty)."""
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
            "model_sha256": model_sha256,
        }
        if policy.peers is not None:
            result["group"] = policy.peers.group
        if health:
            result["health"] = health
        topic = f"{self.prefix}/agents/{self.agent_id}/results/{policy.name}"
        self.publish(topic, json.dumps(result, separators=(",", ":")).encode(), qos=1)

    def audit(self, row: dict[str, Any]) -> None:
        """Record a decision, refusals included (written on the database thread)."""
        self.on_db(lambda: self.store.audit_add(row))
