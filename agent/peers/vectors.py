"""A vector federation over MQTT: devices average large parameter vectors (LoRA adapters)
with the round protocol of :mod:`agent.peers.rounds`, every message in parts
(:mod:`agent.peers.fragments`), raw data never leaving a device.

Extension of SPEC (compatible: new topics only), for a federation named ``N`` in group ``G``:

- ``{p}/groups/{G}/fl/{N}/join/{agent}`` (retained; the last will clears it):
  ``{"agent", "ts", "count"}``: this device takes part, with ``count`` training examples.
- ``{p}/groups/{G}/fl/{N}/round`` and ``.../update/{agent}``: the round and update messages
  of :mod:`agent.peers.rounds` with ``"size"`` set (the vector's length) and no moments stage:
  round 1 carries the coordinator's initial vector, so every member starts from the same one.
  Each message longer than the part limit travels on ``.../part/{i}``.

The coordinator is the lowest id among the devices that joined; it starts once
``min_members`` have joined, and a device that joins later takes part from the next round.
When the coordinator leaves (its will clears its join message), the next lowest resumes from
the last round message. A device is done when the final round of its federation arrives;
it adopts the final vector only if it scores no lower on its own held-out data.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.config import MqttSection
from agent.errors import AgentError
from agent.mqtt import Message, MqttClient, Will
from agent.peers import fedavg as fa
from agent.peers import fragments, wire
from agent.peers.coordinator import Coordinator, FlSettings
from agent.peers.member import VectorMember
from agent.peers.rounds import RoundMessage, parse_round, round_topic, update_topic

log = logging.getLogger(__name__)
Echo = Callable[[str], None]
STALE = 3600.0  # a round older than this when a device joins is not taken up again


def join_topic(prefix: str, group: str, name: str, agent: str) -> str:
    return f"{prefix}/groups/{group}/fl/{name}/join/{agent}"


@dataclass
class Traffic:
    """What this device sent and received, in bytes (as MQTT payloads, parts included)."""

    sent: int = 0
    received: int = 0
    messages_sent: int = 0


class VectorFederation:
    def __init__(
        self,
        mqtt: MqttSection,
        agent_id: str,
        group: str,
        name: str,
        member: VectorMember,
        initial: Callable[[], fa.Array],
        settings: FlSettings,
        *,
        min_members: int = 2,
        part_limit: int = fragments.DEFAULT_LIMIT,
        echo: Echo = lambda _: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if min_members < 1:
            raise AgentError("min_members must be >= 1")
        self.prefix = mqtt.prefix
        self.agent_id = agent_id
        self.group = group
        self.name = name
        self.member = member
        self.initial = initial
        self.settings = settings
        self.min_members = min_members
        self.part_limit = part_limit
        self.echo = echo
        self.clock = clock
        self.joined_at = clock()
        self.joined: dict[str, int] = {}
        self.last: RoundMessage | None = None
        self.coordinator: Coordinator | None = None
        self.traffic = Traffic()
        self.inbox: queue.Queue[Message] = queue.Queue()
        self.parts = fragments.Reassembler()
        base = f"{self.prefix}/groups/{group}/fl/{name}"
        self.topic_join = join_topic(self.prefix, group, name, agent_id)
        self.topic_round = round_topic(self.prefix, group, name)
        filters = [f"{base}/join/+", self.topic_round, fragments.part_filter(self.topic_round),
                   f"{base}/update/+", fragments.part_filter(f"{base}/update/+")]
        cfg = mqtt.model_copy(update={"subscriptions": [], "session_expiry": 0.0})
        self.client = MqttClient(
            cfg, f"edge-agent-fl-{agent_id}-{name}"[:64],
            will=Will(self.topic_join, b"", qos=1, retain=True),
            on_message=self.inbox.put, manual_ack=False, extra_filters=filters,
        )

    # -- running ------------------------------------------------------------------------------

    def run(self, timeout: float) -> RoundMessage:
        """Take part until the federation's final round (returned); AgentError on timeout."""
        self.client.start()
        try:
            if not self.client.wait_connected(30):
                raise AgentError(self.client.last_error or f"cannot reach the broker "
                                                           f"{self.client.cfg.host}")
            self._send(self.topic_join, wire.dumps({"agent": self.agent_id, "ts": self.joined_at,
                                                    "count": self.member.count}), retain=True)
            self.echo(f"joined federation {self.group}/{self.name}; waiting for "
                      f"{self.min_members} members")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self._drain(0.5)
                final = self.member.final
                if final is not None and final.ts >= self.joined_at:
                    return final
                self._tick()
            raise AgentError(f"the federation did not finish within {timeout:.0f}s")
        finally:
            self._send(self.topic_join, b"", retain=True)  # leaving: no longer a member
            self.client.stop()

    def _send(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        sent = fragments.publish(self.client.publish, topic, payload, qos=1, retain=retain,
                                 limit=self.part_limit)
        self.traffic.sent += len(payload) + (0 if sent == 1 else sent * fragments.HEADER.size)
        self.traffic.messages_sent += sent

    def _drain(self, wait: float) -> None:
        try:
            msg = self.inbox.get(timeout=wait)
        except queue.Empty:
            return
        while True:
            try:
                self._on_message(msg.topic, msg.payload)
            except AgentError as exc:
                log.warning("federation %s: ignoring a message on %s: %s", self.name, msg.topic,
                            exc)
            try:
                msg = self.inbox.get_nowait()
            except queue.Empty:
                return

    def _on_message(self, topic: str, payload: bytes) -> None:
        self.traffic.received += len(payload)
        if fragments.base_topic(topic) is not None:
            whole = self.parts.add(topic, payload)
            if whole is None:
                return
            topic, payload = fragments.base_topic(topic) or topic, whole
        tail = topic.rsplit("/", 2)
        if topic == self.topic_round:
            if payload:
                self._on_round(payload)
        elif tail[-2] == "join":
            if payload:
                data = wire.load_object(payload, "fl join")
                agent = wire.word(data, "agent", "fl join")
                if agent != tail[-1]:
                    raise AgentError(f"join of {agent} on the topic of {tail[-1]}")
                self.joined[agent] = wire.integer(data, "count", "fl join", minimum=1)
            else:
                self.joined.pop(tail[-1], None)
        elif tail[-2] == "update" and payload and self.coordinator is not None:
            claimed = wire.load_object(payload, "fl update").get("agent")
            if claimed != tail[-1]:
                raise AgentError(f"update of {claimed!r} on the topic of {tail[-1]!r}")
            why = self.coordinator.on_update(payload, self.clock())
            if why is not None:
                log.info("federation %s: update of %s refused: %s", self.name, tail[-1], why)

    def _on_round(self, payload: bytes) -> None:
        message = parse_round(payload)
        if message.ts < self.joined_at - (0 if message.stage == "final" else STALE):
            return  # a federation that ended (or was abandoned) before this device joined
        self.last = message
        if message.stage == "final":
            self.echo(f"final round {message.round}: scoring the federated weights")
        elif self.agent_id in message.members:
            self.echo(f"round {message.round}.{message.attempt}: training locally from the "
                      f"global weights ({len(message.members)} members)")
        update = self.member.on_round(payload)
        if update is not None:
            self._send(update_topic(self.prefix, self.group, self.name, self.agent_id),
                       update.to_payload())

    def _tick(self) -> None:
        now = self.clock()
        members = sorted(self.joined)
        if not members or members[0] != self.agent_id:
            self.coordinator = None
            return
        if self.coordinator is None:
            self.coordinator = self._begin(now, members)
            if self.coordinator is None:
                return
            message: RoundMessage | None = self.coordinator.current
        else:
            message = self.coordinator.tick(now, members)
            if message is None and self.coordinator.failed:
                raise AgentError(f"federation stopped: {self.coordinator.failed}")
        if message is not None:
            self.last = message
            self._send(self.topic_round, message.to_payload(), retain=True)

    def _begin(self, now: float, members: list[str]) -> Coordinator | None:
        last = self.last
        if last is not None and last.stage != "final":
            coordinator = Coordinator(self.agent_id, self.group, self.name, last.classes,
                                      last.dim, self.settings, session=last.session,
                                      size=last.size)
            coordinator.resume(last, now, members)
            self.echo(f"coordinating: taking over at round {last.round}")
            return coordinator
        if len(members) < self.min_members:
            return None
        start = np.asarray(self.initial(), dtype=np.float64)
        coordinator = Coordinator(self.agent_id, self.group, self.name, ("vector",), 1,
                                  self.settings, size=len(start))
        coordinator.start(now, members, start)
        self.echo(f"coordinating federation {coordinator.current.session} with "
                  f"{', '.join(members)}: {self.settings.rounds} rounds of {len(start):,} weights")
        return coordinator

    def status(self) -> dict[str, Any]:
        return {"joined": sorted(self.joined), "round": None if self.last is None
                else self.last.round, "sent": self.traffic.sent,
                "received": self.traffic.received}
