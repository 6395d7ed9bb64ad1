"""The running agent: wires the broker, the ingest thread, the database and the scheduler."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from agent import __version__
from agent.config import Config, load_config
from agent.errors import AgentError, ConfigError
from agent.inference import store as model_store
from agent.inference.locate import ModelFile, locate
from agent.inference.trial import tried_model
from agent.mqtt import Message, MqttClient, Will
from agent.pipeline.core import DEDUP_MEMORY, Pipeline, Processed
from agent.pipeline.parse import excerpt
from agent.service import limits, modelreceiver, modelupdate, systemd, updatekey
from agent.service.errorevents import ErrorEvents
from agent.service.federation import FederationService
from agent.service.homeassistant import (
    Announcement,
    clean_payload,
    clean_topic,
    discovery_messages,
    should_announce,
)
from agent.service.ingest import Ingestor
from agent.service.manifest import Manifest
from agent.service.metrics import Metrics, Sources
from agent.service.peers import PeerService
from agent.service.permissions import check_permissions, paths_to_check
from agent.service.states import known_actuators, parse_state
from agent.service.systemd import Heartbeat, Watchdog, progressing
from agent.storage import Store

if TYPE_CHECKING:
    from agent.inference.worker import InferenceWorker
    from agent.peers.aggregate import GroupDecision
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
            on_reject=self._report_rejection,
            on_stored=self._on_stored,
            clock=clock,
            queue_limit=config.mqtt.queue_limit,
            hard_limit=config.mqtt.queue_limit + 4 * config.mqtt.receive_maximum,
        )
        self.errors = ErrorEvents(self.topic_errors, self._publish, clock=clock)
        self.states_ignored = 0  # actuator states of actuators no policy names
        self.topic_intents = f"{self.prefix}/agents/{self.id}/intents"
        self.topic_states = f"{self.prefix}/actuators/+/+/state"
        self.worker: InferenceWorker | None = None
        self.outbox: Outbox | None = None
        self.decisions: DecisionService | None = None
        self.intents: IntentQueue | None = None
        self.peers = PeerService(
            config, self.id, publish=self._publish, act=self._act_group, clock=clock
        )
        self.federation = FederationService(
            config, self.id, peers=self.peers, decisions=lambda: self.decisions,
            publish=self._publish, clock=clock,
        )
        extra = [
            self.topic_states, self.topic_intents, *self.peers.filters(),
            *self.federation.filters(),
        ]
        self.topic_ha_status = f"{config.homeassistant.prefix}/status"
        self._announced: set[tuple[str, str]] = set()
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
            + ([self.topic_ha_status] if config.homeassistant.discovery else [])
            + update_filters,
            max_packet=limits.max_packet(config, model_updates=bool(update_filters)),
            probe_topic=f"{self.prefix}/agents/{self.id}/probe",
        )
        # status and heartbeat on an executor of their own: no flood of jobs can starve them
        self.scheduler = BackgroundScheduler(
            daemon=True, executors={"default": ThreadPoolExecutor(10), VITAL: ThreadPoolExecutor(1)}
        )
        self.heartbeat = Heartbeat(60)
        self._known = (config, known_actuators(config))
        self.model_ready = threading.Event()
        self.metrics: Metrics | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        for warning in check_permissions(paths_to_check(self.config)):
            log.warning("%s", warning)
        self._restore()
        self._load_model_info()
        if self.config.policies:
            self._build_decisions()
        self.ingestor.start()
        if self._update_key is not None:
            self._start_model_updates(self._update_key)
        self.mqtt.start()
        if self.decisions is not None:
            self._start_decisions()
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
        self.heartbeat.beat()
        if self.config.metrics.port is not None:
            self._serve_metrics()
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
        if self.updates is not None and self.updates.handle(msg):
            return  # acknowledged by the receiver once written
        if msg.topic == self.topic_ha_status:
            self.mqtt.ack(msg)
            if should_announce(msg.topic, msg.payload, self.config.homeassistant.prefix):
                self.scheduler.add_job(self.announce, id="announce", replace_existing=True)
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

    @property
    def _sensor_prefix(self) -> str:
        return f"{self.prefix}/sensors/"

    def _ack(self, msg: Message) -> None:
        self.mqtt.ack(msg)
        if self.metrics is not None:
            self.metrics.observe_ingest(time.time() - msg.recv_ts)

    def _report_rejection(self, msg: Message, reason: str) -> None:
        self._report_error(msg.topic, reason, excerpt(msg.payload))

    def _report_error(self, topic: str, reason: str, payload: str = "") -> None:
        self.errors.report(topic, reason, payload)

    def _status(self, state: str) -> dict[str, Any]:
        return {
            "state": state,
            "ts": self.clock(),
            "version": __version__,
            "model": self._model_status(),
            "model_state": self.model_state["state"],
            "model_sha256": None if self.model is None else self.model.sha256,
            "uptime_s": round(self.clock() - self.started, 3),
            "readings_total": self.ingestor.rows_total,
            "rejected_total": self.ingestor.counters.rejected,
            "dropped_total": self.ingestor.counters.dropped + self.states_ignored,
            "inbound_stalls": self.mqtt.stalls if hasattr(self, "mqtt") else 0,
            "outbox_depth": 0 if self.outbox is None else self.outbox.depth,
            "queue_depth": self.ingestor.depth(),
            "groups": self.peers.groups if hasattr(self, "peers") else [],
            **({} if self.intents is None else {"intents": self.intents.status()}),
            **({"peers": self.peers.status()} if hasattr(self, "peers") and self.peers.trackers
               else {}),
            **(
                {"federation": self.federation.status()}
                if hasattr(self, "federation") and self.federation.feds
                else {}
            ),
            "policies": {}
            if self.decisions is None
            else {name: st.status() for name, st in self.decisions.states.items()},
        }

    def _model_status(self) -> str | dict[str, str] | None:
        """The file name (SPEC 3); while the model cannot run, an object saying why."""
        name = None if self.model is None else self.model.name
        if self.model_state["state"] == "unusable" and name is not None:
            return {**self.model_state, "file": name}
        return name

    def publish_status(self) -> None:
        self.mqtt.probe(max(limits.PROBE_AFTER, 3 * self.config.agent.status_interval))
        state = "offline" if self._stopping.is_set() else "online"
        self.mqtt.publish(self.topic_status, self._signed_status(state), qos=1, retain=True)

    def _signed_status(self, state: str) -> bytes:
        return self.peers.outgoing(self.topic_status, dumps(self._status(state)))

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

    # -- decisions ----------------------------------------------------------------------------

    def _build_decisions(self) -> None:
        from agent.inference.threads import pick_threads
        from agent.inference.worker import InferenceWorker
        from agent.policy.confirm import Confirmations
        from agent.policy.intents import Registry
        from agent.policy.safety import SafetyLayer
        from agent.policy.signing import load_key
        from agent.service.decisions import DecisionService
        from agent.service.intentqueue import IntentQueue
        from agent.service.intents import IntentHandler, log_confirming
        from agent.service.outbox import Outbox

        cfg = self.config
        if cfg.security.command_key_file is None:
            raise AgentError(
                "policies need security.command_key_file (the key that signs commands)"
            )
        key = load_key(cfg.security.command_key_file)
        model = self.model
        if model is not None:  # for embed/llm engines and for intents
            self.worker = InferenceWorker(
                tried_model(model, pick_threads(cfg.model.threads), cfg.model.context)
            )
            self.model_state = {"state": "loading"}
        self.outbox = Outbox(self.mqtt, self.ingestor.call, self.store, self.clock)
        self.decisions = DecisionService(
            cfg,
            agent_id=self.id,
            pipeline=self.pipeline,
            safety=SafetyLayer(cfg),
            outbox=self.outbox,
            publish=self._publish,
            on_db=self.ingestor.call,
            store=self.store,
            worker=self.worker,
            key=key,
            model_sha256=None if model is None else model.sha256,
            clock=self.clock,
        )
        self.registry = Registry(cfg)
        handler = IntentHandler(
            lambda: self.decisions,
            lambda: self.registry,
            Confirmations(cfg.intents.confirm_ttl, self.clock),
        )
        self.intents = IntentQueue(
            handler.handle,
            self._reply_intent,
            size=cfg.intents.queue,
            per_minute=cfg.intents.per_minute,
        )
        log_confirming(cfg)

    def _start_decisions(self) -> None:
        assert self.decisions is not None and self.outbox is not None
        if self.worker is not None:
            self.worker.start()
        self.decisions.restore_history()
        self.outbox.resume()
        if self.intents is not None:  # after the history: rate limits hold across a restart
            self.intents.start()
        self.scheduler.add_job(self.outbox.poll, "interval", seconds=0.5, id="outbox")
        self.scheduler.add_job(
            self.decisions.enforce_interlocks, "interval", seconds=5, id="interlocks"
        )
        self.scheduler.add_job(
            self.decisions.learning.retrain, "interval", hours=1, id="retrain", max_instances=1
        )
        self._schedule_policies()
        if self.peers.trackers:
            self.scheduler.add_job(
                self.peers.tick, "interval", seconds=0.2, id="peers", max_instances=1, coalesce=True
            )
        if self.federation.feds:
            self.federation.start()
            self.scheduler.add_job(self.federation.tick, "interval", seconds=1, id="federation",
                                   max_instances=1, coalesce=True)
        threading.Thread(target=self._prepare, name="prepare-engines", daemon=True).start()

    def _schedule_policies(self) -> None:
        assert self.decisions is not None
        for job in self.scheduler.get_jobs():
            if job.id.startswith("policy-"):
                job.remove()
        now = self.clock()
        for name, st in self.decisions.states.items():
            every = st.policy.every
            # peered policies decide just after each multiple of `every`, like their peers
            first = (math.floor(now / every) + 1) * every + 0.05 if st.policy.peers else now + every
            self.scheduler.add_job(
                self._decide,
                "interval",
                seconds=every,
                args=[name, "schedule"],
                id=f"policy-{name}",
                max_instances=1,
                coalesce=True,
                next_run_time=datetime.fromtimestamp(first, tz=timezone.utc),
            )

    def _prepare(self) -> None:
        assert self.decisions is not None
        if self.worker is not None:
            try:
                self.worker.wait_ready(420)  # the trial in a child process, then the load
                self.model_state = {"state": "ready"}
            except AgentError as exc:
                self._model_unusable(str(exc))
                self.worker = None
                self.decisions.worker = None
        self.model_ready.set()
        self.decisions.learning.prepare()
        self.publish_status()

    def _model_unusable(self, reason: str) -> None:
        self.model_state = {"state": "unusable", "reason": reason}
        log.error("model unusable: %s; policies run on rules, intents are refused", reason)
        self._report_error(self.topic_status, f"model unusable: {reason}")

    def _decide(self, name: str, trigger: str) -> None:
        if self.decisions is None or self._stopping.is_set():
            return
        started = time.monotonic()
        try:
            self.decisions.run(name, trigger)
            if self.metrics is not None:
                engine = self.decisions.states[name].engine.name
                self.metrics.observe_decision(name, engine, time.monotonic() - started)
        except AgentError as exc:
            log.error("policy %s: %s", name, exc)

    def _on_stored(self, rows: list[Processed]) -> None:
        """On the ingest thread after a commit: publish cleaned values for dashboards; run a
        policy at once if an input crossed its band."""
        if self.config.homeassistant.discovery:
            self._publish_clean(rows)
        if self.decisions is None:
            return
        for p in rows:
            name = self.decisions.on_reading(p.reading.device, p.reading.quantity, p.clean)
            if name is not None and not self._stopping.is_set():  # one waiting per policy at most
                self.scheduler.add_job(self._decide, args=[name, "crossing"],
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

    def _reply_intent(self, reply: dict[str, Any]) -> None:
        self.mqtt.publish(f"{self.topic_intents}/reply", dumps(reply), qos=1)

    def _publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """Publish, signed with this agent's identity if it goes to its peers."""
        self.mqtt.publish(topic, self.peers.outgoing(topic, payload), qos=qos, retain=retain)

    def _act_group(self, decision: GroupDecision) -> None:
        if self.decisions is not None and not self._stopping.is_set():
            self.decisions.act_group(decision)

    def _serve_metrics(self) -> None:
        def tokens_per_second() -> float | None:
            worker = self.worker
            if worker is None or not worker.ready.is_set():
                return None
            return worker.model.stats.tokens_per_second()

        self.metrics = Metrics(
            Sources(
                readings_total=lambda: self.ingestor.rows_total,
                received_total=lambda: self.ingestor.counters.received,
                rejected_by_reason=lambda: dict(self.ingestor.counters.rejected_by_reason),
                queue_depth=self.ingestor.depth,
                outbox_depth=lambda: 0 if self.outbox is None else self.outbox.depth,
                tokens_per_second=tokens_per_second,
                model_usable=lambda: None
                if self.model_state["state"] in ("none", "loading")
                else self.model_state["state"] == "ready",
            )
        )
        assert self.config.metrics.port is not None
        port = self.metrics.serve(self.config.metrics.port, self.config.metrics.host)
        log.info("metrics on http://%s:%d/metrics", self.config.metrics.host, port)

    # -- Home Assistant -----------------------------------------------------------------------

    def _on_connected(self) -> None:
        self.publish_status()
        if self.config.homeassistant.discovery and not self._stopping.is_set():
            self.scheduler.add_job(self.announce, id="announce", replace_existing=True)

    def announce(self) -> None:
        """MQTT discovery: cleaned sensors, decisions and connectivity, retained."""
        series = self.ingestor.call(self.store.series).result(timeout=30)
        self._announced = set(series)
        cfg = self.config
        announcement = Announcement(
            self.prefix,
            self.id,
            __version__,
            series,
            {q: s.unit for q, s in cfg.sensors.items()},
            {p.name: list(p.actuators[0].actions) for p in cfg.policies if p.targets},
            cfg.homeassistant.prefix,
        )
        for topic, payload in discovery_messages(announcement):
            self.mqtt.publish(topic, payload, qos=1, retain=True)

    def _publish_clean(self, rows: list[Processed]) -> None:
        latest = {(p.reading.device, p.reading.quantity): p for p in rows}
        for (device, quantity), p in latest.items():
            self.mqtt.publish(
                clean_topic(self.prefix, self.id, device, quantity),
                clean_payload(p.clean, p.reading.ts, p.unit),
                qos=0,
                retain=True,
            )
        if not set(latest) <= self._announced and not self._stopping.is_set():
            self._announced |= set(latest)
            self.scheduler.add_job(self.announce, id="announce", replace_existing=True)

    # -- reload (SIGHUP) ----------------------------------------------------------------------

    def reload(self, path: Path) -> bool:
        """Apply new sensor settings, policies and interlocks from ``path`` without dropping a
        reading; a bad file is refused and the running configuration kept."""
        from agent.policy.intents import Registry
        from agent.policy.safety import SafetyLayer

        try:
            new = load_config(path)
            merged = self.config.model_copy(
                update={
                    "sensors": new.sensors,
                    "policies": new.policies,
                    "interlocks": new.interlocks,
                }
            )
            safety = SafetyLayer(merged)
        except ConfigError as exc:
            log.error(
                "reload of %s refused, the running configuration stays: %s",
                path,
                "; ".join(exc.errors),
            )
            return False
        later = [
            name
            for name in (
                "agent",
                "mqtt",
                "storage",
                "model",
                "security",
                "intents",
                "metrics",
                "homeassistant",
                "service",
                "features",
            )
            if getattr(new, name) != getattr(self.config, name)
        ]
        if [p.peers for p in new.policies] != [p.peers for p in self.config.policies]:
            later.append("policies[].peers")
        if bool(new.policies) != bool(self.config.policies):
            later.append("policies (from none or to none)")
        if later:
            log.warning("reload: %s changed; restart the agent to apply that", ", ".join(later))
        if self.config.security.roster_file is not None:
            self.peers.reload_roster()
        self.ingestor.call(lambda: self.pipeline.reconfigure(merged)).result(timeout=30)
        if self.decisions is not None and bool(merged.policies):
            self._swap_decisions(merged, safety)
            self.registry = Registry(merged)
        self.config = merged
        log.info("reloaded sensors, policies and interlocks from %s", path)
        self.publish_status()
        return True

    def _swap_decisions(self, config: Config, safety: Any, model_sha256: str | None = None) -> None:
        from agent.service.decisions import DecisionService

        old = self.decisions
        assert old is not None and self.outbox is not None
        new = DecisionService(
            config,
            agent_id=self.id,
            pipeline=self.pipeline,
            safety=safety,
            outbox=self.outbox,
            publish=self._publish,
            on_db=self.ingestor.call,
            store=self.store,
            worker=self.worker,
            key=old.key,
            model_sha256=model_sha256 or old.model_sha256,
            clock=self.clock,
        )
        new.restore_history()
        self.decisions = new
        old.stopping = True
        self._schedule_policies()
        threading.Thread(target=new.learning.prepare, name="prepare-engines", daemon=True).start()
        if new.model_sha256 != old.model_sha256:
            self.federation.start()  # the embeddings of the old model are no use to the new one

    # -- model updates over MQTT --------------------------------------------------------------

    def _start_model_updates(self, key: updatekey.PublicKey) -> None:
        assembler = modelupdate.Assembler(self.config.agent.data_dir, key, self.id, self.clock)
        self.updates = modelreceiver.Receiver(
            assembler,
            self.prefix,
            self.id,
            ack=self.mqtt.ack,
            on_assembled=self._install_model,
            on_refused=self._report_model_refusal,
        )
        self.updates.start()

    def _report_model_refusal(self, topic: str, error: str) -> None:
        event = {"ts": self.clock(), "topic": topic, "error": error, "payload": ""}
        log.error("%s", error)
        self.mqtt.publish(self.topic_errors, dumps(event), qos=0)

    def _install_model(self, path: Path, manifest: Manifest) -> None:
        """On the model-update thread: trial-load, move the pointer, swap inference, report."""
        from agent.inference.threads import pick_threads
        from agent.inference.worker import InferenceWorker

        cfg, old = self.config.model, self.model
        threads = pick_threads(cfg.threads)
        worker = InferenceWorker(
            tried_model(ModelFile(path, manifest.sha256), threads, cfg.context)
        )

        def trial(p: Path) -> None:  # the trial is the new worker's own load: one load, not two
            worker.start()
            worker.wait_ready(120)
            worker.call(lambda m: m.embed("ok"), 60)

        try:
            model_store.install(
                path,
                None if old is None else old.path,
                trial if self.worker is not None else model_store.trial_load(threads, cfg.context),
                ts=manifest.ts,
                version=manifest.version,
            )
        except AgentError as exc:
            worker.stop(5)
            topic = modelupdate.update_topic(self.prefix, self.id)
            self._report_model_refusal(topic, f"model update {manifest.sha256} refused: {exc}")
            return
        self.model = ModelFile(path, manifest.sha256)
        if self.worker is not None:
            old_worker, self.worker = self.worker, worker
            if self.decisions is not None:  # heads are keyed by the model's hash: retrain
                self.decisions.worker = worker
                self._swap_decisions(
                    self.config, self.decisions.safety, model_sha256=manifest.sha256
                )
            old_worker.stop(30)
        else:
            worker.stop(5)
        log.info("model %s (sha256 %s) is now running", manifest.name, manifest.sha256)
        self.publish_status()
