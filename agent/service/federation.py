"""Federated learning between live agents: the rounds of :mod:`agent.peers.rounds` over MQTT.

For every policy with ``peers: {group: G, federated: {...}}`` (engine ``embed``):

- Every member embeds its own examples once (examples generated from its own policy with a
  seed of its own, plus the labels its people gave by overriding an actuator) and its
  held-out cases (the fitness gate's); they never leave the device.
- The group's leader (the lowest settled id online, as for group decisions) is the
  coordinator. It starts a federation when it has been up ``start_after``, at least
  ``min_members`` members are online, and the last federation of the group (the retained
  round message says when it ended) is older than ``every``. It publishes each round on
  ``{p}/groups/{G}/fl/{policy}/round`` (retained), collects the updates on ``.../update/+``
  until all listed members answered or the round's deadline passed, averages them (FedAvg by
  example count, or the masked sum with ``secure: true``) and publishes the next round.
- A member answers the rounds it is listed in (``.../update/{agent}``); with ``secure: true``
  it first publishes its Diffie-Hellman public key (``.../key/{agent}``, retained). From
  round 2 on it adopts the global head only if its own held-out accuracy does not drop and it
  passes the policy's ``min_accuracy``; an adopted head replaces the policy's engine at once
  and is kept across restarts.
- When the leader dies mid-federation, the next leader resumes from the retained round
  message (same round, next attempt, the members online now).

Who sent what (:mod:`agent.peers.trust`): an update or key must name the agent of its topic,
a round its coordinator; with a roster each must carry that agent's signature, and this agent
signs what it publishes. Refusals are logged and counted (status ``peers.refused``).
``peers.robust`` averages the updates coordinate-wise instead of by count, and every round
announces the largest count it takes (``federated.max_count``, default twice ``examples``).

With ``diagnosis: {group: G, federated: {...}}`` the diagnose heads join too, one federation
``diagnose-{quantity}`` per quantity with the same messages (agent.service.diagnosing gives the
member's windows once its engines are prepared); a head the member adopts is installed only if
its own diagnose gate finds it no worse (status ``gate``: installed, or why not).

All of it runs on one thread of its own (embedding and training take seconds), fed by the
MQTT thread and a 1-second tick; nothing here blocks ingest or decisions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.config import Config, FederatedConfig, PolicyConfig
from agent.errors import AgentError
from agent.mqtt import Message
from agent.peers import fedavg as fa
from agent.peers import wire
from agent.peers.coordinator import Coordinator, FlSettings
from agent.peers.member import DpSettings, Member
from agent.peers.membership import MAX_PEERS
from agent.peers.robust import Robust
from agent.peers.rounds import (
    RoundMessage,
    key_payload,
    key_topic,
    parse_key,
    parse_round,
    round_topic,
    update_topic,
)

if TYPE_CHECKING:
    from agent.service.decisions import DecisionService
    from agent.service.diagnosing import DiagnoseLearning
    from agent.service.peers import PeerService

log = logging.getLogger(__name__)

DIAGNOSE = "diagnose-"  # a diagnose head's federation is named diagnose-{quantity}


@dataclass
class PolicyFederation:
    policy: PolicyConfig | None  # None: the diagnose head of ``quantity``
    fed: FederatedConfig
    group: str
    name: str = ""  # the policy's name, or diagnose-{quantity} (the topic's and round's)
    quantity: str | None = None
    gate: dict[str, Any] | None = None  # a diagnose head's last gate: installed or why not
    member: Member | None = None
    failed: str | None = None  # why this agent cannot take part (no model, ...)
    coordinator: Coordinator | None = None
    last: RoundMessage | None = None  # the newest round message seen (retained)
    publics: dict[str, int] = field(default_factory=dict)  # keys that came before the member
    ended_at: float | None = None  # when a federation this agent coordinated stopped early
    rounds_answered: int = 0
    adopted: int = 0

    def status(self, leader: bool) -> dict[str, Any]:
        last = self.last
        out: dict[str, Any] = {
            "group": self.group,
            "role": "coordinator" if leader else "member",
            "ready": self.member is not None,
            "answered": self.rounds_answered,
            "adopted": self.adopted,
        }
        if self.quantity is not None:
            out["diagnose"] = self.quantity
            if self.gate is not None:
                out["gate"] = dict(self.gate)
        if self.failed:
            out["error"] = self.failed
        if last is not None:
            out.update(session=last.session, round=last.round, stage=last.stage)
        return out


class FederationService:
    def __init__(
        self,
        config: Config,
        agent_id: str,
        *,
        peers: PeerService,
        decisions: Callable[[], DecisionService | None],
        publish: Callable[..., Any],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.prefix = config.mqtt.prefix
        self.agent_id = agent_id
        self.peers = peers
        self.decisions = decisions
        self.publish = publish
        self.clock = clock
        self.started = clock()
        self.keys = fa.KeyPair.generate()
        self.feds: dict[str, PolicyFederation] = {}
        for p in config.policies:
            if p.peers is not None and p.peers.federated is not None and p.targets:
                self.feds[p.name] = PolicyFederation(p, p.peers.federated, p.peers.group,
                                                     p.name)
        # the diagnose heads (agent.service.diagnosing sets ``diagnosing`` once they exist)
        self.diagnosing: DiagnoseLearning | None = None
        diag = config.diagnosis
        if diag.enabled and diag.engine == "auto" and diag.federated and diag.group:
            from agent.diagnosis import learn

            for quantity in learn.quantities(learn.load(learn.CORPUS / "train.jsonl")):
                name = f"{DIAGNOSE}{quantity}"
                self.feds[name] = PolicyFederation(None, diag.federated, diag.group, name,
                                                   quantity)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="federation")
        self._tick_queued = threading.Event()
        self.closed = False

    # -- wiring ---------------------------------------------------------------------------------

    def filters(self) -> list[str]:
        out = []
        for name, f in self.feds.items():
            out += [
                round_topic(self.prefix, f.group, name),
                update_topic(self.prefix, f.group, name, "+"),
                key_topic(self.prefix, f.group, name, "+"),
            ]
        return out

    def handle(self, msg: Message) -> bool:
        """Take a federation message (queued for the federation thread); False if it is not."""
        parts = msg.topic.split("/")
        if len(parts) < 6 or parts[1] != "groups" or parts[3] != "fl" or parts[4] not in self.feds:
            return False
        if parts[2] != self.feds[parts[4]].group:
            return False
        try:
            self._check(parts[5:], msg.payload)
        except AgentError as exc:
            self.peers.refuse("federation", msg.topic, str(exc))
            return True
        if not self.closed:
            self.executor.submit(self._guard, self._on_message, parts[4], parts[5:], msg.payload)
        return True

    def _check(self, tail: list[str], payload: bytes) -> None:
        """Refuse a message whose sender is not who its topic says, or (with a roster) that
        its roster key did not sign: rounds by their coordinator, updates and keys by the agent
        in the topic."""
        if not payload:
            return
        data = wire.load_object(payload, f"fl {tail[0]}")
        if tail == ["round"]:
            sender = data.get("coordinator")
        elif len(tail) == 2 and tail[0] in ("update", "key"):
            sender = tail[1]
            if data.get("agent") != sender:
                raise AgentError(f"{tail[0]} of {data.get('agent')!r} on the topic of {sender!r}")
        else:
            raise AgentError("not a federation topic")
        self.peers.trust.check(data, sender if isinstance(sender, str) else "",
                               f"fl {tail[0]} of {sender}")

    def start(self) -> None:
        """Embed each member's data (slow), then publish the keys of secure federations."""
        for name, f in self.feds.items():
            if f.quantity is None:  # diagnose heads: on a tick, once they exist
                self.executor.submit(self._guard, self._prepare, name)

    def tick(self) -> None:
        """Called every second: the coordinator's side (start, close rounds, take over)."""
        if self.feds and not self.closed and not self._tick_queued.is_set():
            self._tick_queued.set()
            self.executor.submit(self._guard, self._tick)

    def stop(self) -> None:
        self.closed = True
        self.executor.shutdown(wait=False, cancel_futures=True)

    def status(self) -> dict[str, Any]:
        return {
            name: f.status(self._leader(f) == self.agent_id) for name, f in self.feds.items()
        }

    # -- on the federation thread -----------------------------------------------------------------

    def _guard(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except AgentError as exc:
            log.warning("federated learning: %s", exc)
        except Exception:  # one bad message or round must not stop the federation thread
            log.exception("federated learning failed")

    def _prepare(self, name: str) -> None:
        f = self.feds[name]
        if f.quantity is not None:
            self._prepare_diagnose(f)
            return
        assert f.policy is not None
        service = self._wait_for_decisions()
        if service is None:
            return
        try:
            data = service.learning.federation_data(f.policy, f.fed)
            head = service.learning.head_for(f.policy)
        except AgentError as exc:
            f.failed = f"cannot take part: {exc}"
            log.error("policy %s: federated learning %s", name, f.failed)
            return
        dp = None if f.fed.dp is None else DpSettings(f.fed.dp.clip, f.fed.dp.sigma)
        member = Member(self.agent_id, data.x, data.labels, data.heldout_x,
                        data.heldout_labels, head=head, dp=dp, keys=self.keys)
        member.publics.update(f.publics)
        f.member = member
        if f.fed.secure:
            self.publish(key_topic(self.prefix, f.group, name, self.agent_id),
                         key_payload(self.agent_id, self.keys), qos=1, retain=True)
        log.info("policy %s: ready for federated learning in group %s (%d examples, %d held out)",
                 name, f.group, len(data.labels), len(data.heldout_labels))
        if f.last is not None:  # a round arrived while the data was being embedded
            self._on_round(f, f.last.to_payload())

    def _prepare_diagnose(self, f: PolicyFederation) -> None:
        """On a tick once the diagnose heads exist (never waits on the federation thread)."""
        assert f.quantity is not None
        learning = self.diagnosing
        if learning is None or not learning.ready.is_set():
            return
        try:
            x, y, hx, hy, head = learning.federation_data(f.quantity)
        except AgentError as exc:
            f.failed = f"cannot take part: {exc}"
            log.error("diagnosis %s: federated learning %s", f.quantity, f.failed)
            return
        dp = None if f.fed.dp is None else DpSettings(f.fed.dp.clip, f.fed.dp.sigma)
        member = Member(self.agent_id, x, y, hx, hy, head=head, dp=dp, keys=self.keys)
        member.publics.update(f.publics)
        f.member = member
        if f.fed.secure:
            self.publish(key_topic(self.prefix, f.group, f.name, self.agent_id),
                         key_payload(self.agent_id, self.keys), qos=1, retain=True)
        log.info("diagnosis %s: ready for federated learning in group %s (%d windows, %d held "
                 "out)", f.quantity, f.group, len(y), len(hy))
        if f.last is not None:
            self._on_round(f, f.last.to_payload())

    def _install_diagnose(self, f: PolicyFederation, head: Any, source: str,
                          session: str) -> None:
        """A head the member adopted: installed only if the diagnose gate passes it."""
        assert f.quantity is not None
        learning = self.diagnosing
        if learning is None:
            return
        installed, why = learning.install_federated(f.quantity, head, source)
        if installed or f.gate is None or not f.gate["installed"] \
                or f.gate["session"] != session:  # an installed head of this session stays said
            f.gate = {"installed": installed, "session": session, "reason": why,
                      "source": source}
        f.adopted += installed
        log.info("diagnosis %s: federated head %s (%s): %s", f.quantity,
                 "installed" if installed else "refused by the gate", source, why)

    def _wait_for_decisions(self) -> DecisionService | None:
        while not self.closed:
            service = self.decisions()
            if service is not None and service.worker is not None:
                return service
            if service is not None and service.worker is None and service.states:
                return None  # no model: the embed engine (and so federation) cannot run
            time.sleep(0.5)
        return None

    def _on_message(self, name: str, tail: list[str], payload: bytes) -> None:
        f = self.feds[name]
        if tail == ["round"]:
            if payload:
                self._on_round(f, payload)
        elif len(tail) == 2 and tail[0] == "update":
            if f.coordinator is not None and payload:
                why = f.coordinator.on_update(payload, self.clock())
                if why is not None:
                    log.info("policy %s: update of %s refused: %s", name, tail[1], why)
        elif len(tail) == 2 and tail[0] == "key" and payload:
            agent, public = parse_key(payload)
            if agent != tail[1]:
                raise AgentError(f"key of {agent} published on the topic of {tail[1]}")
            if agent not in f.publics and len(f.publics) >= MAX_PEERS:
                raise AgentError(f"key of {agent}: already {MAX_PEERS} keys known")
            f.publics[agent] = public
            if f.member is not None:
                f.member.publics[agent] = public

    def _on_round(self, f: PolicyFederation, payload: bytes) -> None:
        message = parse_round(payload)
        if message.group != f.group or message.policy != f.name:
            raise AgentError(f"round message for {message.group}/{message.policy} on the topic "
                             f"of {f.group}/{f.name}")
        f.last = message
        member = f.member
        if member is None:
            return
        adopted = member.adopted
        update = member.on_round(payload)
        source = f"federated (session {message.session}, round {message.round})"
        if member.adopted > adopted and member.head is not None and f.policy is None:
            self._install_diagnose(f, member.head, source, message.session)
        elif f.policy is None and message.stage == "final" and (
                f.gate is None or f.gate["session"] != message.session):
            f.gate = {"installed": False, "session": message.session, "source": source,
                      "reason": "less accurate on this member's held-out windows than its own "
                                "head in every round"}
            log.info("diagnosis %s: federated head not adopted (%s): %s", f.quantity, source,
                     f.gate["reason"])
        elif member.adopted > adopted and member.head is not None and f.policy is not None:
            service = self.decisions()
            score = member.head.accuracy(member.heldout_x, member.heldout_labels)
            if service is not None and service.learning.install_head(
                f.name, member.head, score, source,
            ):
                f.adopted += 1
        if update is not None:
            self.publish(update_topic(self.prefix, f.group, f.name, self.agent_id),
                         update.to_payload(), qos=1)
            f.rounds_answered += 1
            log.info("policy %s: sent the update for round %d.%d (%s)", f.name,
                     message.round, message.attempt, message.stage)

    def _leader(self, f: PolicyFederation) -> str | None:
        with self.peers.lock:
            return self.peers.membership.leader(f.group)

    def _members(self, f: PolicyFederation) -> list[str]:
        with self.peers.lock:
            return self.peers.membership.members(f.group)

    def _tick(self) -> None:
        self._tick_queued.clear()
        now = self.clock()
        for f in self.feds.values():
            if f.quantity is not None and f.member is None and f.failed is None:
                self._prepare_diagnose(f)
            if self._leader(f) != self.agent_id or f.member is None:
                f.coordinator = None  # not (or not yet) ours to run
                continue
            members = self._members(f)
            if f.coordinator is None:
                f.coordinator = self._begin(f, now, members)
                if f.coordinator is None:
                    continue
                message = f.coordinator.current
            else:
                try:
                    next_message = f.coordinator.tick(now, members)
                except Exception:  # a round that fails is over, not retried every second
                    log.exception("policy %s: federation stopped", f.name)
                    f.coordinator, f.ended_at = None, now
                    continue
                if next_message is None:
                    if f.coordinator.done and f.coordinator.failed:
                        log.warning("policy %s: federation stopped: %s", f.name,
                                    f.coordinator.failed)
                        f.coordinator = None
                        f.ended_at = now
                    continue
                message = next_message
            self._publish_round(f, message)

    def _begin(self, f: PolicyFederation, now: float, members: list[str]) -> Coordinator | None:
        """A coordinator for a new federation, or one taking over the last; None if not due."""
        last = f.last
        robust = f.policy.peers.robust if f.policy is not None and f.policy.peers is not None \
            else None
        examples = f.fed.examples if f.policy is not None or f.member is None \
            else len(f.member.x)  # a diagnose head: this member's windows
        settings = FlSettings(rounds=f.fed.rounds, epochs=f.fed.epochs, lr=f.fed.lr,
                              deadline=f.fed.deadline, secure=f.fed.secure,
                              max_count=f.fed.max_count or 2 * examples,
                              robust=None if robust is None else Robust(robust.method,
                                                                        robust.trim))
        if f.policy is not None:
            classes = list(f.policy.actuators[0].actions)
        else:  # a diagnose head: its classes (the same corpus on every member)
            classes = list(f.member.head.classes) if f.member and f.member.head else []
        dim = int(np.asarray(f.member.x).shape[1]) if f.member is not None else 0
        if f.ended_at is not None and now - f.ended_at < f.fed.every:
            return None  # the last one this agent ran stopped early: wait as after a final
        recent = last is not None and now - last.ts < 3 * last.deadline + 60
        if last is not None and last.stage != "final" and recent:
            coordinator = Coordinator(self.agent_id, f.group, f.name, classes, dim,
                                      settings, session=last.session)
            coordinator.resume(last, now, members)
            log.info("policy %s: taking over federation %s at round %d", f.name,
                     last.session, last.round)
            return coordinator
        if now - self.started < f.fed.start_after or len(members) < f.fed.min_members:
            return None
        if last is not None and last.stage == "final" and now - last.ts < f.fed.every:
            return None
        coordinator = Coordinator(self.agent_id, f.group, f.name, classes, dim, settings)
        coordinator.start(now, members)
        log.info("policy %s: starting federation %s with %s", f.name,
                 coordinator.current.session, ", ".join(members))
        return coordinator

    def _publish_round(self, f: PolicyFederation, message: RoundMessage) -> None:
        f.last = message
        self.publish(round_topic(self.prefix, f.group, f.name), message.to_payload(),
                     qos=1, retain=True)
        log.info("policy %s: round %d.%d (%s) to %s", f.name, message.round,
                 message.attempt, message.stage, ", ".join(message.members))
        if f.coordinator is not None and f.coordinator.done and message.stage == "final":
            f.coordinator = None  # the federation is over; the retained final marks when
