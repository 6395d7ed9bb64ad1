"""Attack 6 (issue 12): whatever floods the scheduler's thread pool (decisions triggered by band
crossings, intents, ...), the status and the watchdog's heartbeat go on: they run on an
executor of their own. A real agent on a real broker; the flood is jobs that each hold a
thread of the pool until the test lets them go."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.broker import Mosquitto
from agent.config import load_config
from agent.service.runtime import Agent
from tests.conftest import Collector, agent_config, wait_for

pytestmark = pytest.mark.broker

STATUS = "edge/agents/test-agent/status"


def test_status_and_heartbeat_go_on_while_every_pool_thread_is_held(
    tmp_path: Path, broker: Mosquitto, collector_factory: Callable[..., Collector]
) -> None:
    watch = collector_factory(broker.port, STATUS)
    agent = Agent(load_config(agent_config(tmp_path, broker.port)))
    release = threading.Event()
    agent.start()
    try:
        wait_for(lambda: any(s["state"] == "online" for s in watch.on(STATUS)), what="online")
        for _ in range(100):  # far more than the pool's threads
            agent.scheduler.add_job(release.wait, args=[120])
        seen = len(watch.on(STATUS))
        wait_for(lambda: len(watch.on(STATUS)) >= seen + 3, timeout=30,
                 what="status messages while every thread of the pool is held")
        beat = agent.heartbeat.last
        wait_for(lambda: agent.heartbeat.last > beat, timeout=30, what="a heartbeat")
        assert agent.heartbeat()
    finally:
        release.set()
        agent.stop()
