"""The durable command outbox: recorded in SQLite before publishing, delivered exactly by id.

A command row is written (one per decision, by a unique index) before it is published at
QoS 1, and marked delivered once the broker acknowledged it. At start-up, undelivered commands
are published again in order, with the same id, nonce and signature (never re-signed under a
new id); expired ones are dropped and recorded as expired. Within one run paho itself resends
an unacknowledged message after a reconnect.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from agent.storage import OutboxRow, Store

log = logging.getLogger(__name__)
T = TypeVar("T")


class Publisher(Protocol):
    def publish(
        self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False
    ) -> Any: ...


def acknowledged(info: Any) -> bool:
    """paho's ``is_published`` raises when the message was queued while disconnected, though
    paho still sends it after reconnecting and then flags the same object as published."""
    try:
        return bool(info.is_published())
    except (RuntimeError, ValueError):
        return bool(getattr(info, "_published", False))


class Outbox:
    def __init__(
        self,
        publisher: Publisher,
        on_db: Callable[[Callable[[], Any]], Future[Any]],
        store: Store,
        clock: Callable[[], float],
    ) -> None:
        self._publisher = publisher
        self._on_db = on_db  # runs a function on the thread that owns the database
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._in_flight: list[tuple[OutboxRow, Any]] = []
        self.depth = 0
        self.delivered = 0
        self.expired = 0

    def _db(self, fn: Callable[[], T]) -> T:
        result: T = self._on_db(fn).result(timeout=30)
        return result

    def resume(self) -> None:
        """At start-up: resend what was recorded but never acknowledged, drop what expired."""
        now = self._clock()
        pending = self._db(self._store.outbox_pending)
        self.depth = len(pending)
        for row in pending:
            if row.expires < now:
                self._db(lambda r=row: self._store.outbox_mark(r.id, "expired", now))  # type: ignore[misc]
                self.depth -= 1
                self.expired += 1
                log.warning("command %s for %s expired before delivery; dropped", row.id, row.topic)
            else:
                log.info("resending undelivered command %s to %s", row.id, row.topic)
                self._publish(row)

    def send(self, command: dict[str, object], decision_id: str, topic: str) -> bool:
        """Record, then publish. False if this decision already has a command (never twice)."""
        row = OutboxRow(
            str(command["id"]),
            decision_id,
            topic,
            json.dumps(command, separators=(",", ":"), ensure_ascii=False),
            float(command["ts"]),  # type: ignore[arg-type]
            float(command["expires"]),  # type: ignore[arg-type]
        )
        if not self._db(lambda: self._store.outbox_add(row)):
            log.warning("decision %s already has a command; not sending another", decision_id)
            return False
        with self._lock:
            self.depth += 1
        self._publish(row)
        return True

    def _publish(self, row: OutboxRow) -> None:
        info = self._publisher.publish(row.topic, row.payload.encode(), qos=1)
        with self._lock:
            self._in_flight.append((row, info))
        self._on_db(lambda: self._store.outbox_attempt(row.id))

    def poll(self) -> int:
        """Mark the commands the broker has acknowledged as delivered; return how many."""
        with self._lock:
            flags = [(r, i, acknowledged(i)) for r, i in self._in_flight]
            done = [(r, i) for r, i, ok in flags if ok]
            self._in_flight = [(r, i) for r, i, ok in flags if not ok]
            self.depth -= len(done)
            self.delivered += len(done)
        now = self._clock()
        for row, _ in done:
            self._on_db(lambda r=row: self._store.outbox_mark(r.id, "delivered", now))  # type: ignore[misc]
        return len(done)
