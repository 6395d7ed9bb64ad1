"""One worker for intents, a bounded queue in front of it and a per-requester rate limit.

Intents arrive on the MQTT network thread (which also commits readings), cost a model call
each and are cheap to send by the thousand.
Run on the scheduler's pool, a flood of them took every thread and starved the heartbeat; here
they wait in a queue of ``intents.queue`` for a single thread of their own. What cannot be
queued (over the requester's ``intents.per_minute``, the queue full, too large) is dropped and
counted by reason; a refusal is also replied while the reply budget allows, so a well-behaved
client learns why and a flood does not double itself on the broker.

The requester is the request's ``id``: a flood under ever-new ids passes the per-requester limit
but not the queue, and only ever delays other intents, never the rest of the agent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

from agent.service.intents import refusal, requester_of

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 8192  # a request is an id and at most 500 characters of text
MAX_REQUESTERS = 1024  # rate buckets kept; the least recently seen goes first
REPLIES_PER_SECOND = 5.0  # refusals answered at most this often (all requesters together)
_STOP = object()


class Bucket:
    """A token bucket: ``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class IntentQueue:
    def __init__(
        self,
        handle: Callable[[bytes], dict[str, Any]],
        reply: Callable[[dict[str, Any]], None],
        *,
        size: int,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._handle = handle
        self._reply = reply
        self._clock = clock
        self._per_minute = per_minute
        self._queue: queue.Queue[object] = queue.Queue(maxsize=size)
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()
        self._replies = Bucket(REPLIES_PER_SECOND, REPLIES_PER_SECOND, clock())
        self._lock = threading.Lock()  # buckets, counters: the network thread, status readers
        self.counts: Counter[str] = Counter()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._work, name="intents", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the request in hand; what still waits is dropped (intents are not kept)."""
        self._stopping.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        with contextlib.suppress(queue.Full):  # refilled meanwhile: _stopping ends the worker
            self._queue.put_nowait(_STOP)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def status(self) -> dict[str, int]:
        with self._lock:
            return {"queued": self._queue.qsize(), **self.counts}

    def submit(self, payload: bytes) -> bool:
        """On the MQTT network thread: queue the request, or drop it and count why. Never blocks."""
        if self._stopping.is_set():
            return False
        if len(payload) > MAX_REQUEST_BYTES:
            return self._drop("too_large", None, f"request over {MAX_REQUEST_BYTES} bytes")
        request_id = _id_of(payload)
        now = self._clock()
        with self._lock:
            key = requester_of(request_id)
            bucket = self._buckets.pop(key, None) or Bucket(
                self._per_minute / 60.0, float(self._per_minute), now
            )
            self._buckets[key] = bucket  # most recently seen last
            while len(self._buckets) > MAX_REQUESTERS:
                self._buckets.popitem(last=False)
            allowed = bucket.take(now)
        if not allowed:
            return self._drop(
                "rate_limited", request_id, f"busy: over {self._per_minute} requests a minute"
            )
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            return self._drop("queue_full", request_id, "busy: too many requests waiting")
        with self._lock:
            self.counts["accepted"] += 1
        return True

    def _drop(self, reason: str, request_id: object, error: str) -> bool:
        with self._lock:
            self.counts[f"dropped_{reason}"] += 1
            dropped = sum(n for k, n in self.counts.items() if k.startswith("dropped_"))
            answer = self._replies.take(self._clock())
        if dropped == 1 or dropped % 1000 == 0:
            log.warning("intents: %d requests dropped so far (this one: %s)", dropped, reason)
        if answer:
            self._reply(refusal(request_id, error))
        return False

    def _work(self) -> None:
        while not self._stopping.is_set():
            payload = self._queue.get()
            if payload is _STOP:
                return
            assert isinstance(payload, bytes)
            try:
                answer = self._handle(payload)
            except Exception:  # a bug must not kill the worker: logged, and the caller told
                log.exception("intent handling failed")
                answer = refusal(_id_of(payload), "internal error; see the agent's log")
            with self._lock:
                self.counts["answered"] += 1
            self._reply(answer)


def _id_of(payload: bytes) -> object:
    """The request's id, or None if there is none to read."""
    try:
        request = json.loads(payload)
    except (ValueError, RecursionError):  # RecursionError: "[[[[…" nested past the stack
        return None
    return request.get("id") if isinstance(request, dict) else None
