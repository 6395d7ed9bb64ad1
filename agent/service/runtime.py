"""The running agent: wires its parts (broker, ingest, database, scheduler, policies, peers)
and owns their lifecycle: start, run under systemd, stop."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from agent.config import Config
from agent.errors import AgentError, NeedsModel
from agent.inference import store as model_store
from agent.inference.locate import ModelFile, locate
from agent.mqtt import Message, MqttClient, Will
from agent.pipeline.core import DEDUP_MEMORY, Pipeline, Processed
from agent.pipeline.parse import excerpt
from agent.service import limits, modelreceiver, modelupdate, systemd
from agent.service.agentmetrics import serve_metrics
from agent.service.errorevents import ErrorEvents
from agent.service.federation import FederationService
from agent.service.halink import HomeAssistantLink
from agent.service.health import HealthService
from agent.service.ingest import Arrival, Ingestor
from agent.service.metrics import Metrics
from agent.service.modelswap import start_model_updates
from agent.service.peers import PeerService
from agent.service.permissions import check_permissions, paths_to_check
from agent.service.policies import build_decisions, decide, start_decisions
from agent.service.reload import reload
from agent.service.states import known_actuators, parse_state
from agent.service.status import status_payload
from agent.service.systemd import Heartbeat, Watchdog, progressing
from agent.storage import Store

if TYPE_CHECKING:
    from agent.inference.worker import InferenceWorker
    from agent.peers.aggregate import GroupDecision
    from agent.policy.intents import Registry
    from agent.service.decisions import DecisionService
    from agent.service.intentqueue import IntentQueue
    from agent.service.outbox import Outbox

log = logging.getLogger(__name__)
VITAL = "vital"  # the scheduler's executor for status and heartbeat


def dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class Agent:
    """One edge agent. ``start()``, then ``stop()``; or ``run(stop_event)`` for both."""

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.prefix = config.mqtt.prefix
        self.id = config.agent.id
        self.topic_status = f"{self.prefix}/agents/{self.id}/status"
        self.topic_errors = f"{self.prefix}/agents/{self.id}/errors"
        self._sensor_prefix = f"{self.prefix}/sensors/"
        self.pipeline = Pipeline(config)
        self.model: ModelFile | None = None
        # "none" (no policy needs it), "loading", "ready" or "unusable" (then policies run on
        # rules and intents are refused); the reason says why in one line
        self.model_state: dict[str, str] = {"state": "none"}
        self.started = clock()
        self._stopping = threading.Event()
        self.store = Store(config.db_path, config.storage.synchronous)
        self.ingestor = Ingestor(
            self.store,
            self.pipeline,
            prefix=self.prefix,
            max_payload_bytes=config.mqtt.max_payload_bytes,
            batch_size=config.storage.batch_size,
            batch_interval=config.storage.batch_interval,
            ack=self._ack,
            ack_all=self._ack_all,
            observe=self._observe_batch,
            on_reject=self._report_rejection,
            on_stored=self._on_stored,
            clock=clock,
            queue_limit=config.mqtt.queue_limit,
            hard_limit=config.mqtt.queue_limit + 4 * config.mqtt.receive_maximum,
            on_redeliver=lambda: self.mqtt.redeliver(),
        )
        self.errors = ErrorEvents(self.topic_errors, self.publish, clock=clock)
        self.states_ignored = 0  # actuator states of actuators no policy names
        self.topic_intents = f"{self.prefix}/agents/{self.id}/intents"
        self.topic_states = f"{self.prefix}/actuators/+/+/state"
        self.worker: InferenceWorker | None = None
        self.outbox: Outbox | None = None
        self.decisions: DecisionService | None = None
        self.intents: IntentQueue | None = None
        self.registry: Registry  # the devices intents may name, once policies are built
        self.peers = PeerService(
            config, self.id, publish=self.publish, act=self._act_group, clock=clock
        )
        self.federation = FederationService(
            config, self.id, peers=self.peers, decisions=lambda: self.decisions,
            publish=self.publish, clock=clock,
        )
        self.health = HealthService(config, self.id, publish=self.publish, key=None, clock=clock)
        extra = [
            self.topic_states, self.topic_intents, *self.peers.filters(),
            *self.federation.filters(), *self.health.filters(),
        ]
        self.homeassistant = HomeAssistantLink(
            config, self.id, self._publish_plain,
            lambda fn: self._soon(fn, "announce"),
            lambda: self.ingestor.call(self.store.series).result(timeout=30),
            lambda: self.stopping,
        )
        self.updates: modelreceiver.Receiver | None = None
        self._update_key = modelupdate.update_key(config)
        update_filters = modelupdate.filters(self.prefix, self.id) if self._update_key else []
        self.mqtt = MqttClient(
            config.mqtt,
            config.mqtt.client_id or f"edge-agent-{self.id}",
            will=Will(self.topic_status, self._signed_status("offline")),
            on_message=self._on_message,
            on_connect=self._on_connected,
            extra_filters=(extra if config.policies else [])
            + self.homeassistant.filters()
            + update_filters,
            max_packet=limits.max_packet(config, model_updates=bool(update_filters)),
            probe_topic=f"{self.prefix}/agents/{self.id}/probe",
            on_drained=self.ingestor.drain,  # one thread: socket, batch, commit, acknowledgement
            drain_after=min(config.storage.batch_size, config.mqtt.queue_limit),
            thread_name="ingest",
        )
        # status and heartbeat on an executor of their own: no flood of jobs can starve them
        self.scheduler = BackgroundScheduler(
            daemon=True, executors={"default": ThreadPoolExecutor(10), VITAL: ThreadPoolExecutor(1)}
        )
        self.heartbeat = Heartbeat(60)
        self._known = (config, known_actuators(config))
        self.model_ready = threading.Event()
        self.metrics: Metrics | None = None
        self.intent_listeners: list[Callable[[dict[str, Any]], None]] = []  # the dashboard

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        for warning in check_permissions(paths_to_check(self.config)):
            log.warning("%s", warning)
        self._restore()
        self._load_model_info()
        if self.config.policies:
            build_decisions(self)
        self.ingestor.start(wake=self.mqtt.wake)
        if self._update_key is not None:
            start_model_updates(self, self._update_key)
        self.mqtt.start()
        if self.decisions is not None:
            start_decisions(self)
        self.scheduler.add_job(
            self.publish_status, "interval", seconds=self.config.agent.status_interval, id="status",
            executor=VITAL,
        )
        retention = self.config.storage.retention
        if retention.max_age is not None or retention.max_size is not None:
            self.scheduler.add_job(
                self.run_retention, "interval", seconds=retention.every, id="retention"
            )
            self.scheduler.add_job(self.run_retention, id="retention-now")  # once, at start
        self.scheduler.add_job(
            self.heartbeat.beat, "interval", seconds=10, id="heartbeat", executor=VITAL
        )
        self.schedule_health()
        self.heartbeat.beat()
        if self.config.metrics.port is not None:
            self.metrics = serve_metrics(self)
        self.scheduler.start()
        log.info(
            "agent %s started: %d readings stored, subscribed to %s",
            self.id,
            self.ingestor.rows_total,
            ", ".join(self.config.mqtt.topic_filters),
        )
        log.info("%s", limits.describe(self.config, self.mqtt.max_packet))

    def stop(self) -> None:
        """Stop taking work, commit and acknowledge what is in hand, go offline, disconnect."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self.scheduler.shutdown(wait=False)
        if self.outbox is not None:
            self.outbox.poll()
        self.ingestor.stop()
        if self.metrics is not None:
            self.metrics.close()
        if self.decisions is not None:
            self.decisions.stopping = True
        if self.intents is not None:
            self.intents.stop()
        self.federation.stop()
        if self.worker is not None:
            self.worker.stop()
        if self.updates is not None:
            self.updates.stop()
        if self.mqtt.connected and not self.mqtt.publish_wait(
            self.topic_status, self._signed_status("offline"), qos=1, retain=True, timeout=3.0
        ):
            log.warning("the offline status was not acknowledged by the broker")
        self.mqtt.stop()
        self.store.close()
        log.info("agent %s stopped", self.id)

    def run(self, stop: threading.Event) -> int:
        """Start, tell systemd when really ready, keep its watchdog fed while work progresses,
        and stop cleanly when ``stop`` is set."""
        systemd.status("starting")
        self.start()
        dog = None
        try:
            while not stop.is_set() and not self.mqtt.wait_connected(1):
                systemd.status(f"waiting for the broker: {self.mqtt.last_error or 'connecting'}")
            if self.worker is not None:
                while not stop.is_set() and not self.model_ready.wait(1):
                    systemd.status("loading the model")
            if not stop.is_set():
                model = "no model" if self.model is None else f"model {self.model.name}"
                systemd.ready(
                    f"connected to {self.config.mqtt.host}:{self.config.mqtt.port}, {model}"
                )
                dog = Watchdog.from_env(
                    {
                        "ingest": progressing(
                            self.ingestor.depth,
                            lambda: self.ingestor.last_progress,
                            self.config.service.stall_after,
                        ),
                        "scheduler": self.heartbeat,
                    }
                )
                if dog is not None:
                    dog.start()
            stop.wait()
        finally:
            systemd.stopping("stopping: committing what is in hand")
            if dog is not None:
                dog.stop()
            self.stop()
        return 0

    def _restore(self) -> None:
        """Refill duplicate detection and feature windows from the database."""
        since = self.clock() - max(self.config.features.windows)
        for device, quantity in self.store.series():
            self.pipeline.seen(
                device, quantity, self.store.recent_keys(device, quantity, DEDUP_MEMORY)
            )
            self.pipeline.restore(device, quantity, self.store.points(device, quantity, since))

    def _load_model_info(self) -> None:
        installed = model_store.current_model(self.config.agent.data_dir)
        if installed is not None:  # a model update installed here wins over model.path
            self.model = installed
            return
        try:
            self.model = locate(self.config.model.path, self.config.agent.data_dir)
        except (AgentError, OSError) as exc:
            log.warning("model: %s", exc)

    # -- traffic -----------------------------------------------------------------------------

    def _on_message(self, msg: Message) -> None:
        if self._stopping.is_set():  # after stop: left unacknowledged, redelivered later
            return
        if msg.topic.startswith(self._sensor_prefix):  # diagnosis sees it once ingest parsed it
            self.ingestor.submit(msg)
            return
        if self.health.observe(msg):  # our own commands: seen by the diagnosis only
            self.mqtt.ack(msg)
            return
        if self.updates is not None and self.updates.handle(msg):
            return  # acknowledged by the receiver once written
        if msg.topic == self.homeassistant.topic_status:
            self.mqtt.ack(msg)
            self.homeassistant.on_ha_status(msg)
            return
        if self.decisions is not None and not msg.topic.startswith(self._sensor_prefix):
            self.mqtt.ack(msg)  # state, intents and peers are handled once, not stored
            if self.peers.handle(msg) or self.federation.handle(msg):
                return
            if msg.topic == self.topic_intents and self.intents is not None:
                self.intents.submit(msg.payload)  # never blocks: queued, or dropped and counted
            elif msg.topic.endswith("/state"):
                self._handle_state(msg)
            return
        self.ingestor.submit(msg)


    def _ack(self, msg: Message) -> None:
        self.mqtt.ack(msg)
        if self.metrics is not None:
            self.metrics.observe_ingest(time.time() - msg.recv_ts)

    def _ack_all(self, msgs: list[Message]) -> None:
        self.mqtt.ack_all(msgs)
        if self.metrics is not None:
            now = time.time()
            for msg in msgs:
                self.metrics.observe_ingest(now - msg.recv_ts)

    def _observe_batch(self, arrivals: list[Arrival]) -> None:
        self.health.arrivals(arrivals)

    def _report_rejection(self, msg: Message, reason: str) -> None:
        self.report_error(msg.topic, reason, excerpt(msg.payload))

    def report_error(self, topic: str, reason: str, payload: str = "") -> None:
        self.errors.report(topic, reason, payload)

    def publish_status(self) -> None:
        self.mqtt.probe(max(limits.PROBE_AFTER, 3 * self.config.agent.status_interval))
        state = "offline" if self._stopping.is_set() else "online"
        self.mqtt.publish(self.topic_status, self._signed_status(state), qos=1, retain=True)

    def _signed_status(self, state: str) -> bytes:
        return self.peers.outgoing(self.topic_status, dumps(status_payload(self, state)))

    def run_retention(self) -> None:
        r = self.config.storage.retention

        def prune() -> int:
            deleted = self.store.prune(r.max_age, r.max_size, self.clock())
            self.ingestor.rows_total -= deleted
            return deleted

        try:
            deleted = self.ingestor.call(prune).result(timeout=600)
        except AgentError as exc:
            log.error("%s", exc)
            return
        if deleted:
            log.info("retention removed %d old readings", deleted)

    def _on_stored(self, rows: list[Processed]) -> None:
        """On the ingest thread after a commit: publish cleaned values for dashboards; run a
        policy at once if an input crossed its band."""
        if self.config.homeassistant.discovery:
            self.homeassistant.publish_clean(rows)
        decisions = self.decisions
        if decisions is None:
            return
        crossed: dict[str, None] = {}  # each policy once per batch, on its latest readings
        for p in rows:
            name = decisions.on_reading(p.reading.device, p.reading.quantity, p.clean)
            if name is not None:
                crossed[name] = None
        for name in crossed:
            if self._stopping.is_set():
                return
            st = decisions.states.get(name)
            if st is not None and st.engine is st.rules:
                # rules decide in microseconds: here, on the thread that committed the reading,
                # the command is on the wire before the next batch is read, with no thread to
                # wake on the way (the outbox row is written inline on this same thread)
                try:
                    decide(self, name, "crossing", rules_only=True)
                    continue
                except NeedsModel:
                    pass  # its gate passed just now: the model decides, on the scheduler's side
                except Exception:  # a bug in one decision must not stop ingestion
                    log.exception("policy %s: the decision on a band crossing failed", name)
                    continue
            # the model's engines take longer: on the scheduler's threads
            self.scheduler.add_job(decide, args=[self, name, "crossing"],
                                   id=f"crossing-{name}", replace_existing=True)

    def _handle_state(self, msg: Message) -> None:
        assert self.decisions is not None
        if self._known[0] is not self.config:
            self._known = (self.config, known_actuators(self.config))
        state = parse_state(msg.topic, msg.payload, self._known[1])
        if state is None:
            self.states_ignored += 1  # of an actuator no policy names: nothing kept
            return
        self.decisions.on_state(*state)

    def reply_intent(self, reply: dict[str, Any]) -> None:
        self.mqtt.publish(f"{self.topic_intents}/reply", dumps(reply), qos=1)
        for listener in self.intent_listeners:
            listener(reply)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """Publish, signed with this agent's identity if it goes to its peers."""
        self.mqtt.publish(topic, self.peers.outgoing(topic, payload), qos=qos, retain=retain)

    def _act_group(self, decision: GroupDecision) -> None:
        if self.decisions is not None and not self._stopping.is_set():
            self.decisions.act_group(decision)

    # -- small services the parts are given ---------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _publish_plain(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False
    ) -> None:
        self.mqtt.publish(topic, payload, qos=qos, retain=retain)

    def _soon(self, fn: Callable[[], None], job: str) -> None:
        """Run ``fn`` on the scheduler soon; one waiting at most."""
        self.scheduler.add_job(fn, id=job, replace_existing=True)

    def _on_connected(self) -> None:
        self.publish_status()
        self.homeassistant.on_connected()

    def schedule_health(self) -> None:
        """The diagnosis checks every ``diagnosis.check_every`` while it is enabled (a reload
        may change either)."""
        job = self.scheduler.get_job("health")
        if job is not None:
            job.remove()
        if self.config.diagnosis.enabled:
            self.scheduler.add_job(self.health.tick, "interval", id="health", max_instances=1,
                                   seconds=self.config.diagnosis.check_every, coalesce=True)

    def reload(self, path: Path) -> bool:
        """SIGHUP: see :func:`agent.service.reload.reload`."""
        return reload(self, path)

    def report_model_refusal(self, topic: str, error: str) -> None:
        event = {"ts": self.clock(), "topic": topic, "error": error, "payload": ""}
        log.error("%s", error)
        self.mqtt.publish(self.topic_errors, dumps(event), qos=0)
