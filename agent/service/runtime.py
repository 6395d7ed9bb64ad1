"""The running agent: wires the broker, the ingest thread, the database and the scheduler."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from agent import __version__
from agent.config import Config
from agent.errors import AgentError
from agent.inference.locate import ModelFile, locate
from agent.mqtt import Message, MqttClient, Will
from agent.pipeline.core import DEDUP_MEMORY, Pipeline
from agent.pipeline.parse import excerpt
from agent.service.ingest import Ingestor
from agent.storage import Store

log = logging.getLogger(__name__)


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
            clock=clock,
        )
        self.mqtt = MqttClient(
            config.mqtt,
            config.mqtt.client_id or f"edge-agent-{self.id}",
            will=Will(self.topic_status, dumps(self._status("offline"))),
            on_message=self._on_message,
            on_connect=self.publish_status,
        )
        self.scheduler = BackgroundScheduler(daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._restore()
        self._load_model_info()
        self.ingestor.start()
        self.mqtt.start()
        self.scheduler.add_job(
            self.publish_status, "interval", seconds=self.config.agent.status_interval, id="status"
        )
        retention = self.config.storage.retention
        if retention.max_age is not None or retention.max_size is not None:
            self.scheduler.add_job(
                self.run_retention, "interval", seconds=retention.every, id="retention"
            )
            self.scheduler.add_job(self.run_retention, id="retention-now")  # once, at start
        self.scheduler.start()
        log.info(
            "agent %s started: %d readings stored, subscribed to %s",
            self.id,
            self.ingestor.rows_total,
            ", ".join(self.config.mqtt.topic_filters),
        )

    def stop(self) -> None:
        """Stop taking work, commit and acknowledge what is in hand, go offline, disconnect."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self.scheduler.shutdown(wait=False)
        self.ingestor.stop()
        if self.mqtt.connected and not self.mqtt.publish_wait(
            self.topic_status, dumps(self._status("offline")), qos=1, retain=True, timeout=3.0
        ):
            log.warning("the offline status was not acknowledged by the broker")
        self.mqtt.stop()
        self.store.close()
        log.info("agent %s stopped", self.id)

    def run(self, stop: threading.Event) -> int:
        self.start()
        try:
            stop.wait()
        finally:
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
        try:
            self.model = locate(self.config.model.path, self.config.agent.data_dir)
        except (AgentError, OSError) as exc:
            log.warning("model: %s", exc)

    # -- traffic -----------------------------------------------------------------------------

    def _on_message(self, msg: Message) -> None:
        if not self._stopping.is_set():  # after stop: left unacknowledged, redelivered later
            self.ingestor.submit(msg)

    def _ack(self, msg: Message) -> None:
        self.mqtt.ack(msg)

    def _report_rejection(self, msg: Message, reason: str) -> None:
        event = {
            "ts": self.clock(),
            "topic": msg.topic,
            "error": reason,
            "payload": excerpt(msg.payload),
        }
        self.mqtt.publish(self.topic_errors, dumps(event), qos=0)

    def _status(self, state: str) -> dict[str, Any]:
        return {
            "state": state,
            "ts": self.clock(),
            "version": __version__,
            "model": None if self.model is None else self.model.name,
            "model_sha256": None if self.model is None else self.model.sha256,
            "uptime_s": round(self.clock() - self.started, 3),
            "readings_total": self.ingestor.rows_total,
            "rejected_total": self.ingestor.counters.rejected,
            "outbox_depth": 0,
            "queue_depth": self.ingestor.depth(),
        }

    def publish_status(self) -> None:
        state = "offline" if self._stopping.is_set() else "online"
        self.mqtt.publish(self.topic_status, dumps(self._status(state)), qos=1, retain=True)

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
