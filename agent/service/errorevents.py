"""Error events (SPEC 2) at a bounded rate: a flood of bad messages must not become a flood
of events (and log lines) from the agent.

A token bucket: ``burst`` events at once, then ``rate`` a second. What is over it is counted,
not published; the next event that passes is preceded by one that says how many were left
out, so an operator always learns that there were more.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], None]


class ErrorEvents:
    def __init__(
        self,
        topic: str,
        publish: Publish,
        *,
        rate: float = 20.0,
        burst: int = 200,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topic = topic
        self._publish = publish
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._monotonic = monotonic
        self._tokens = float(burst)
        self._last = monotonic()
        self._lock = threading.Lock()
        self.published = 0
        self.suppressed = 0  # left out since the last event that went out
        self.suppressed_total = 0

    def report(self, topic: str, error: str, payload: str) -> bool:
        """Publish one event unless over the rate; False if it was left out (counted)."""
        with self._lock:
            now = self._monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens < 1:
                self.suppressed += 1
                self.suppressed_total += 1
                return False
            self._tokens -= 1
            left_out, self.suppressed = self.suppressed, 0
        if left_out:
            note = f"{left_out} more error events were left out (over {self.rate:g} a second)"
            log.warning("%s", note)
            self._send(topic, note, "")
        log.warning("rejected message on %s: %s", topic, error)
        self._send(topic, error, payload)
        return True

    def _send(self, topic: str, error: str, payload: str) -> None:
        event = {"ts": self._clock(), "topic": topic, "error": error, "payload": payload}
        self._publish(self.topic, json.dumps(event, separators=(",", ":")).encode())
        self.published += 1
