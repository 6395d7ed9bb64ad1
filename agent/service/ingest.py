"""The ingest thread: messages in, readings committed, then acknowledged.

The network thread only enqueues. This thread takes messages in batches (flushed at
``batch_size``, at ``batch_interval`` after the first one, or as soon as the stream pauses),
parses and cleans them, commits the batch in one transaction, and only then acknowledges each
message to the broker. Work for the database from other threads (retention) is queued here
too, so one thread owns the connection.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from agent.errors import RejectedReading, StorageError
from agent.mqtt import Message
from agent.pipeline.core import Pipeline, Processed
from agent.pipeline.parse import parse_reading
from agent.storage import Store

log = logging.getLogger(__name__)

IDLE_FLUSH = 0.005  # flush when no message arrived for this long (the broker's window is full)
RETRY_MAX = 5.0


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
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.prefix = prefix
        self.max_payload_bytes = max_payload_bytes
        self.batch_size = batch_size
        self.batch_interval = batch_interval
        self._ack = ack
        self._on_reject = on_reject
        self._on_stored = on_stored
        self._clock = clock
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ingest", daemon=True)
        self._stopping = threading.Event()
        self.counters = Counters()
        self.rows_total = store.count()
        self.last_progress = time.monotonic()
        self._in_hand = 0  # messages taken off the queue and not yet committed

    # -- called from other threads -----------------------------------------------------------

    def submit(self, msg: Message) -> None:
        self._queue.put(msg)

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn`` on the ingest thread, between batches."""
        future: Future[Any] = Future()
        self._queue.put(_Task(fn, future))
        return future

    def depth(self) -> int:
        """Messages waiting, counting the batch in hand: a batch stuck in a commit (a locked
        database, a full disk) is work waiting, not an idle agent."""
        return self._queue.qsize() + self._in_hand

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 8.0) -> None:
        """Finish, commit and acknowledge everything queued so far, then end the thread."""
        self._stopping.set()
        self._queue.put(_STOP)
        self._thread.join(timeout)

    # -- the ingest thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, _Task):
                self._run_task(item)
                continue
            assert isinstance(item, Message)
            batch = [item]
            pending = self._collect(batch)
            self._in_hand = len(batch)
            try:
                self._flush(batch)
            finally:
                self._in_hand = 0
            if pending is _STOP:
                return
            if isinstance(pending, _Task):
                self._run_task(pending)

    def _collect(self, batch: list[Message]) -> object:
        """Add messages to ``batch`` until it is full, old, or the stream pauses."""
        deadline = time.monotonic() + self.batch_interval
        while len(batch) < self.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                item = self._queue.get(timeout=min(remaining, IDLE_FLUSH))
            except queue.Empty:
                break
            if not isinstance(item, Message):
                return item
            batch.append(item)
        return None

    def _run_task(self, task: _Task) -> None:
        self.last_progress = time.monotonic()  # a long task (retention) is progress too
        if not task.future.set_running_or_notify_cancel():
            return
        try:
            task.future.set_result(task.fn())
        except BaseException as exc:
            task.future.set_exception(exc)

    def _flush(self, batch: list[Message]) -> None:
        rows: list[Processed] = []
        rejected: list[tuple[Message, RejectedReading]] = []
        c = self.counters
        for msg in batch:
            c.received += 1
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
                continue
            except Exception as exc:  # wire input must never stop ingestion
                log.exception("unexpected error on a message from %s", msg.topic)
                rejected.append((msg, RejectedReading(f"cannot process: {exc!r}"[:200])))
                continue
            if processed is None:
                c.duplicates += 1
            elif processed.store:
                rows.append(processed)
                c.outliers += processed.outlier
            else:
                c.suppressed += 1
        if rows and not self._write(rows):
            return  # not committed, so not acknowledged: the broker will redeliver
        for msg in batch:
            self._ack(msg)
        if rows and self._on_stored is not None:
            self._on_stored(rows)
        c.batches += 1
        self.last_progress = time.monotonic()
        for msg, why in rejected:
            c.rejected += 1
            c.rejected_by_reason[why.kind] = c.rejected_by_reason.get(why.kind, 0) + 1
            log.warning("rejected message on %s: %s", msg.topic, why)
            self._on_reject(msg, str(why))

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
