"""Ingest: messages in, readings committed, then acknowledged.

In the agent the MQTT client's network thread is the ingest thread: it reads messages off
the socket (``submit`` queues each one, on the same thread) and, once the socket has nothing
more to read or a batch is full, calls :meth:`Ingestor.drain`, which parses and cleans the
batch, commits it in one transaction and only then acknowledges its messages to the broker,
in one write. No reading crosses a thread between the socket and the database, and batches
grow with the load (a backlog fills them; a quiet stream commits each reading as it comes).
Work for the database from other threads (retention, the outbox) is queued here too and runs
between batches (:meth:`Ingestor.call` wakes the network thread), so one thread owns the
connection. Without a driver (``start()`` without ``wake``) the ingestor runs a thread of its
own, which gathers a millisecond after a message before it commits (a group commit).

The queue is bounded without breaking acknowledge-after-commit. A QoS 1 message is bounded by
the broker (MQTT 5 Receive Maximum: it sends no more unacknowledged ones than that), so it
is always queued; a QoS 0 message that finds ``queue_limit`` messages waiting is dropped and
counted. A payload over ``max_payload_bytes`` is cut to its excerpt on arrival, so a flood of
large messages holds no more than the excerpts while it waits to be rejected. Only a broker
that breaks our receive maximum meets ``hard_limit`` (Mosquitto 2.0 draining a persistent
session's backlog with ``max_inflight_messages 0`` does): a QoS 1 message over it is neither
held nor acknowledged, so the broker still owes it; once the queue has drained,
``on_redeliver`` ends the connection (the session stays) and the broker sends it again. Memory
stays bounded and no acknowledged reading is lost. (Driven by the network thread, the queue
never holds more than the client's ``drain_after`` messages: it reads no more before it
drains.)
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from agent.errors import RejectedReading, StorageError
from agent.mqtt import Message
from agent.pipeline.core import Pipeline, Processed
from agent.pipeline.parse import Reading, excerpt, parse_reading, split_topic
from agent.storage import Store

log = logging.getLogger(__name__)

IDLE_FLUSH = 0.001  # a batch gathers this long (at most batch_interval), then commits
RETRY_MAX = 5.0
DROP_LOG_EVERY = 10.0  # seconds between two warnings about a full queue


@dataclass
class Counters:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    suppressed: int = 0
    outliers: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    dropped: int = 0  # QoS 0 not queued: the queue was full (counted on the network thread)
    deferred: int = 0  # QoS 1 over hard_limit: not acknowledged, so the broker sends it again


class Arrival(NamedTuple):
    """What diagnosis learns of one sensor message (``Ingestor.observe``): its series, when it
    came, its reading (None if unusable) and its value in the canonical unit once the pipeline
    took it (None if it did not)."""

    device: str
    quantity: str
    recv_ts: float
    reading: Reading | None
    value: float | None


class _Refused(NamedTuple):
    """A message refused on arrival, waiting in line to be acknowledged and reported."""

    msg: Message
    why: RejectedReading


@dataclass
class _Task:
    fn: Callable[[], Any]
    future: Future[Any]


_STOP = object()


class Ingestor:
    def __init__(
        self,
        store: Store,
        pipeline: Pipeline,
        *,
        prefix: str,
        max_payload_bytes: int,
        batch_size: int,
        batch_interval: float,
        ack: Callable[[Message], None],
        on_reject: Callable[[Message, str], None],
        on_stored: Callable[[list[Processed]], None] | None = None,
        clock: Callable[[], float] = time.time,
        queue_limit: int = 2000,
        hard_limit: int | None = None,
        on_redeliver: Callable[[], None] | None = None,
        ack_all: Callable[[list[Message]], None] | None = None,
        observe: Callable[[list[Arrival]], None] | None = None,
    ) -> None:
        """``ack_all``, if given, acknowledges a committed batch at once (instead of ``ack`` per
        message); ``observe`` is shown every batch's sensor messages after they were handled."""
        self.store = store
        self.pipeline = pipeline
        self.prefix = prefix
        self.max_payload_bytes = max_payload_bytes
        self.batch_size = batch_size
        self.batch_interval = batch_interval
        self._ack = ack
        self._ack_all = ack_all
        self._observe = observe
        self._on_reject = on_reject
        self._on_stored = on_stored
        self._clock = clock
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.queue_limit = queue_limit
        self.hard_limit = hard_limit if hard_limit is not None else 4 * queue_limit
        self._on_redeliver = on_redeliver
        self._owed = False  # QoS 1 messages were left unacknowledged: reconnect once drained
        self._drop_logged = -math.inf
        # messages in the queue (tasks not counted) = submitted - taken; each counter has one
        # writer (the network thread, the ingest thread), so neither needs a lock
        self._submitted = 0
        self._taken_n = 0
        self._thread = threading.Thread(target=self._run, name="ingest", daemon=True)
        self._wake: Callable[[], None] | None = None  # set by start(): a driver runs drain()
        self._owner: int | None = None  # the thread that drains (tasks it calls run inline)
        self._gather = min(IDLE_FLUSH, batch_interval)
        self._stopped = threading.Event()
        self._stopping = threading.Event()
        self.counters = Counters()
        self.rows_total = store.count()
        self.last_progress = time.monotonic()
        self._in_hand = 0  # messages taken off the queue and not yet committed

    # -- called from other threads -----------------------------------------------------------

    def submit(self, msg: Message) -> bool:
        """Queue a message from the network thread; False if it was dropped (queue full)."""
        waiting = self._submitted - self._taken_n
        if waiting >= self.hard_limit or (msg.qos == 0 and waiting >= self.queue_limit):
            if msg.qos > 0:  # the broker still owes it: sent again after the next reconnect
                self.counters.deferred += 1
                self._owed = True
            else:
                self.counters.dropped += 1
            self._log_drop(waiting)
            return False
        item: object = msg
        if len(msg.payload) > self.max_payload_bytes:  # hold the excerpt, not the payload
            item = _Refused(
                msg._replace(payload=excerpt(msg.payload).encode()),
                RejectedReading(
                    f"payload of {len(msg.payload)} bytes exceeds max_payload_bytes "
                    f"({self.max_payload_bytes})",
                    "too-large",
                ),
            )
        self._submitted += 1
        self._queue.put(item)
        return True

    def _log_drop(self, waiting: int) -> None:
        now = time.monotonic()
        if now - self._drop_logged >= DROP_LOG_EVERY:
            self._drop_logged = now
            log.warning(
                "ingest queue full (%d messages waiting): %d QoS 0 messages dropped, %d QoS 1 "
                "left for the broker to send again",
                waiting,
                self.counters.dropped,
                self.counters.deferred,
            )

    @property
    def _waiting(self) -> int:
        return self._submitted - self._taken_n

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn`` on the ingest thread, between batches (at once if called there: a
        handler on the network thread must not wait for itself)."""
        future: Future[Any] = Future()
        task = _Task(fn, future)
        if threading.get_ident() == self._owner:
            self._run_task(task)
            return future
        self._queue.put(task)
        if self._wake is not None:
            self._wake()
        return future

    def depth(self) -> int:
        """Messages waiting, counting the batch in hand: a batch stuck in a commit (a locked
        database, a full disk) is work waiting, not an idle agent."""
        return self._queue.qsize() + self._in_hand

    def start(self, wake: Callable[[], None] | None = None) -> None:
        """Run a thread of our own; or, given ``wake``, leave :meth:`drain` to the caller's
        thread (the MQTT client's), which ``wake`` asks to run it soon."""
        if wake is None:
            self._thread.start()
        else:
            self._wake = wake
            self._gather = 0.0  # the driver drains once the socket is quiet: nothing to wait for

    def stop(self, timeout: float = 8.0) -> None:
        """Finish, commit and acknowledge everything queued so far, then take no more."""
        self._stopping.set()
        self._queue.put(_STOP)
        if self._wake is None:
            self._thread.join(timeout)
            return
        if threading.get_ident() == self._owner:
            self.drain()
        else:
            self._wake()
            self._stopped.wait(timeout)

    # -- the ingest thread -------------------------------------------------------------------

    def drain(self) -> None:
        """Handle everything queued, in batches, on the calling thread (the driver's)."""
        self._owner = threading.get_ident()
        get = self._queue.get_nowait
        while not self._stopped.is_set():
            try:
                item = get()
            except queue.Empty:
                return
            if not self._handle(item):
                self._stopped.set()

    def _run(self) -> None:
        self._owner = threading.get_ident()
        while self._handle(self._queue.get()):
            pass
        self._stopped.set()

    def _handle(self, item: object) -> bool:
        """One item off the queue, and the batch it starts; False once told to stop."""
        if item is _STOP:
            return False
        if isinstance(item, _Task):
            self._run_task(item)
            return True
        assert isinstance(item, (Message, _Refused))
        self._taken_n += 1
        batch: list[Message | _Refused] = [item]
        pending = self._collect(batch)
        self._in_hand = len(batch)
        try:
            self._flush(batch)
        finally:
            self._in_hand = 0
        if self._owed and self._waiting == 0 and self._on_redeliver is not None:
            self._owed = False  # drained: ask the broker for what it still owes us
            log.info("ingest queue drained: reconnecting so the broker resends %d messages "
                     "it sent beyond our receive maximum", self.counters.deferred)
            self._on_redeliver()
        if pending is _STOP:
            return False
        if isinstance(pending, _Task):
            self._run_task(pending)
        return True

    def _collect(self, batch: list[Message | _Refused]) -> object:
        """Add to ``batch`` all that is waiting, up to ``batch_size``. On a thread of its own
        it first sleeps ``IDLE_FLUSH`` (at most ``batch_interval``): a group commit, one
        wake-up rather than one thread switch per message. While one batch commits the next
        one gathers, so batches grow with the load and no reading waits for a quiet moment (a
        steady stream never has one) to be committed and to reach the decisions."""
        if self._gather:
            time.sleep(self._gather)
        get = self._queue.get_nowait
        had = len(batch)
        item: object = None
        while len(batch) < self.batch_size:
            try:
                item = get()
            except queue.Empty:
                item = None
                break
            if not isinstance(item, (Message, _Refused)):
                break
            batch.append(item)
            item = None
        self._taken_n += len(batch) - had
        return item

    def _run_task(self, task: _Task) -> None:
        self.last_progress = time.monotonic()  # a long task (retention) is progress too
        if not task.future.set_running_or_notify_cancel():
            return
        try:
            task.future.set_result(task.fn())
        except BaseException as exc:
            task.future.set_exception(exc)

    def _flush(self, batch: list[Message | _Refused]) -> None:
        rows: list[Processed] = []
        rejected: list[tuple[Message, RejectedReading]] = []
        seen: list[Arrival] | None = [] if self._observe is not None else None
        c = self.counters
        messages = [item.msg if isinstance(item, _Refused) else item for item in batch]
        c.received += len(batch)
        for item in batch:
            if isinstance(item, _Refused):
                rejected.append(item)
                if seen is not None:
                    self._unusable(item.msg, seen)
                continue
            processed = self._process(item, rejected, seen)
            if processed is None:
                continue
            if processed.store:
                rows.append(processed)
                c.outliers += processed.outlier
            else:
                c.suppressed += 1
        if rows and not self._write(rows):
            return  # not committed, so not acknowledged: the broker will redeliver
        if self._ack_all is not None:
            self._ack_all(messages)
        else:
            for msg in messages:
                self._ack(msg)
        if rows and self._on_stored is not None:
            self._on_stored(rows)
        c.batches += 1
        self.last_progress = time.monotonic()
        if seen and self._observe is not None:
            self._observe(seen)
        for msg, why in rejected:
            c.rejected += 1
            c.rejected_by_reason[why.kind] = c.rejected_by_reason.get(why.kind, 0) + 1
            self._on_reject(msg, str(why))

    def _process(
        self,
        msg: Message,
        rejected: list[tuple[Message, RejectedReading]],
        seen: list[Arrival] | None,
    ) -> Processed | None:
        """One message through parse and pipeline: Processed, or None (rejected, counted in
        ``rejected``; or a duplicate, counted here)."""
        reading = None
        try:
            reading = parse_reading(
                msg.topic,
                msg.payload,
                msg.recv_ts,
                prefix=self.prefix,
                max_bytes=self.max_payload_bytes,
            )
            processed = self.pipeline.process(reading)
        except RejectedReading as exc:
            rejected.append((msg, exc))
            processed = None
        except Exception as exc:  # wire input must never stop ingestion
            log.exception("unexpected error on a message from %s", msg.topic)
            rejected.append((msg, RejectedReading(f"cannot process: {exc!r}"[:200])))
            processed = None
        else:
            if processed is None:
                self.counters.duplicates += 1
        if seen is not None:
            if reading is None:
                self._unusable(msg, seen)
            else:
                value = None if processed is None else processed.value
                seen.append(Arrival(reading.device, reading.quantity, msg.recv_ts, reading, value))
        return processed

    def _unusable(self, msg: Message, seen: list[Arrival]) -> None:
        try:
            device, quantity = split_topic(msg.topic, self.prefix)
        except RejectedReading:
            return  # no series at all
        seen.append(Arrival(device, quantity, msg.recv_ts, None, None))

    def _write(self, rows: list[Processed]) -> bool:
        delay = 0.1
        while True:
            try:
                inserted = self.store.write(rows)
                break
            except StorageError as exc:
                if self._stopping.is_set():
                    log.error("%s; stopping without acknowledging the batch", exc)
                    return False
                log.error("%s; retrying in %.1fs (nothing is acknowledged meanwhile)", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
        self.counters.stored += inserted
        self.counters.duplicates += len(rows) - inserted
        self.rows_total += inserted
        return True
