"""Part of attack 6 of issue 12: a flood of intents must not starve the agent.

Each intent costs a model call; on the scheduler's pool a flood took every thread and the
status heartbeat (and the watchdog's) stopped. Here thousands of requests, from a few requester
ids and from ever-new ones, arrive without pause on a real broker: status messages keep arriving
while the flood goes on, what could not be queued is counted, and a normal request is
answered afterwards."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.broker import Mosquitto
from tests.conftest import AgentProcess, Collector, wait_for
from tests.intents_env import INTENTS, REPLY, SET, STATUS, ask, home_config, reply, start, warm_up

pytestmark = pytest.mark.broker

TEXT = "set the living room ac to 21"
STATUSES = 8  # status messages (one a second) that must arrive while the flood goes on
RSS_GROWTH = 64 << 20  # bytes: what the agent may grow by in the flood (it holds <= 4 requests)


def rss(pid: int) -> int:
    """The process's resident memory in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class Flood:
    """Intents sent without pause from another thread, far faster than the model answers."""

    def __init__(self, flooder: Collector) -> None:
        self.sent = 0
        self._flooder = flooder
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            i = self.sent
            rid = f"flood-{i % 10}" if i % 2 else f"flood-new-{i}"  # a few ids, ever-new ones
            self._flooder.publish(INTENTS, json.dumps({"id": rid, "text": TEXT}))
            self.sent += 1
            time.sleep(0.002)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(10)
        return self.sent


def test_an_intent_flood_leaves_the_heartbeat_and_later_requests_alone(
    tmp_path: Path,
    broker: Mosquitto,
    agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector],
) -> None:
    watch = collector_factory(broker.port, STATUS, REPLY, SET)
    config = home_config(tmp_path, broker.port, intents={"queue": 4, "per_minute": 5})
    agent = start(agent_factory, config, watch)
    warm_up(watch)
    wait_for(lambda: watch.on(STATUS)[-1].get("model_state") == "ready", timeout=300,
             what="the model loaded (so memory is measured from there)")
    assert agent.proc is not None
    before, peak = rss(agent.proc.pid), 0
    flood = Flood(collector_factory(broker.port))

    def statuses_arrive() -> bool:  # the scheduler publishes one a second, flood or not
        nonlocal peak
        peak = max(peak, rss(agent.proc.pid) if agent.proc is not None else 0)
        return len(watch.on(STATUS)) >= seen + STATUSES

    try:
        wait_for(lambda: flood.sent > 200, what="the flood under way")
        seen = len(watch.on(STATUS))
        wait_for(statuses_arrive, timeout=60, what=f"{STATUSES} statuses while the flood goes on")
    finally:
        sent = flood.stop()
    assert peak - before < RSS_GROWTH, (before, peak)  # the queue is bounded, and so is memory

    def counted() -> dict[str, int]:
        intents: dict[str, int] = watch.on(STATUS)[-1].get("intents", {})
        return intents

    def handled() -> int:  # accepted or dropped: every request, the warm-up's included
        return sum(n for k, n in counted().items() if k == "accepted" or k.startswith("dropped"))

    wait_for(lambda: handled() == sent + 1, timeout=120, what="every flooded request counted")
    counts = counted()
    assert counts["dropped_rate_limited"] > 0 and counts["dropped_queue_full"] > 0, counts
    assert counts["queued"] <= 4
    # a normal request from a new requester is answered (by the model) once the queue drains
    ask(watch, "normal", "lock the front door")
    answer = reply(watch, "normal", timeout=180)
    assert str(answer["error"]).startswith("confirmation needed"), answer
    assert agent.alive()
