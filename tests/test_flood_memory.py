"""Attack 6 (issue 12): floods on a shared broker, against a real agent process on a real
Mosquitto. Each test measures the agent's resident memory (RSS, psutil) before and during or
after its flood and bounds the growth: generous enough for the allocator's noise, far below
what unbounded growth reaches with floods this size (the figures are in each test).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent.broker import Mosquitto
from tests.conftest import AgentProcess, Collector, agent_config, start_agent, wait_for

pytestmark = pytest.mark.broker

PREFIX = "edge"
STATUS = f"{PREFIX}/agents/test-agent/status"
ERRORS = f"{PREFIX}/agents/test-agent/errors"
MIB = 1 << 20
LOG = Path("/tmp/floods/figures.log")  # the measured figures, for the report


def rss(agent: AgentProcess) -> int:
    assert agent.proc is not None
    return int(psutil.Process(agent.proc.pid).memory_info().rss)


def record(name: str, before: int, after: int) -> None:
    line = f"{name}: RSS {before / MIB:.1f} MiB -> {after / MIB:.1f} MiB " \
           f"(+{(after - before) / MIB:.1f} MiB)"
    print(line)
    LOG.parent.mkdir(exist_ok=True)
    with LOG.open("a") as fh:
        fh.write(line + "\n")


@contextmanager
def peak_rss(agent: AgentProcess) -> Iterator[list[int]]:
    """Samples the agent's RSS every 50 ms while the block runs; yields [peak]."""
    peak = [rss(agent)]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            try:
                peak[0] = max(peak[0], rss(agent))
            except psutil.Error:
                return

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join()


def start(
    tmp_path: Path,
    broker: Mosquitto,
    agent_factory: Callable[[Path], AgentProcess],
    watch: Collector,
    **overrides: Any,
) -> AgentProcess:
    agent = start_agent(agent_factory, agent_config(tmp_path, broker.port, **overrides), watch)
    time.sleep(1.0)  # let start-up allocations settle before the first measurement
    return agent


def last_status(watch: Collector) -> dict[str, Any]:
    return watch.on(STATUS)[-1]


def flood(watch: Collector, messages: Iterator[tuple[str, bytes]], qos: int = 1) -> int:
    """Publish everything; the number of messages."""
    infos = []
    n = 0
    for topic, payload in messages:
        infos.append(watch.publish(topic, payload, qos=qos))
        n += 1
    for info in infos[-1000:]:
        if qos:
            info.wait_for_publish(60)
    return n


def marker_stored(watch: Collector, before: int) -> Callable[[], bool]:
    """True once the status counts one more stored reading than ``before``."""
    return lambda: int(last_status(watch)["readings_total"]) > before


def test_a_flood_of_new_quantity_names_does_not_grow_the_agent(
    tmp_path: Path,
    broker: Mosquitto,
    agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector],
) -> None:
    # 30000 names: unbounded, each makes a series, a row in the series table and its state
    watch = collector_factory(broker.port, STATUS, ERRORS)
    agent = start(tmp_path, broker, agent_factory, watch)
    before = rss(agent)
    n = flood(watch, ((f"{PREFIX}/sensors/flood-{i % 10}/q{i}", b"1.5") for i in range(30_000)))
    wait_for(lambda: int(last_status(watch).get("rejected_total", 0))
             + int(last_status(watch)["readings_total"]) >= n, timeout=300,
             what="every flood message processed")
    after = rss(agent)
    record("new quantity names x30000", before, after)
    status = last_status(watch)
    assert status["readings_total"] <= 10 * 32, "more series than the cap made rows"
    assert after - before < 25 * MIB, f"RSS grew by {(after - before) / MIB:.1f} MiB"
    assert watch.on(ERRORS), "refused readings are reported"
    assert agent.alive()


def test_strict_sensors_refuse_every_unknown_quantity(
    tmp_path: Path,
    broker: Mosquitto,
    agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector],
) -> None:
    watch = collector_factory(broker.port, STATUS, ERRORS)
    agent = start(tmp_path, broker, agent_factory, watch, sensors__strict=True)
    for i in range(20):
        watch.publish(f"{PREFIX}/sensors/dev-1/made-up-{i}", b"1.0")
    watch.publish(f"{PREFIX}/sensors/dev-1/temperature", b"21.0")
    wait_for(lambda: int(last_status(watch)["readings_total"]) == 1
             and int(last_status(watch)["rejected_total"]) == 20, what="20 refused, 1 stored")
    errors = watch.on(ERRORS)
    assert len(errors) == 20 and all("sensors.strict" in e["error"] for e in errors)
    assert agent.alive()


def test_a_flood_of_states_of_unknown_actuators_does_not_grow_the_agent(
    tmp_path: Path,
    broker: Mosquitto,
    agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector],
) -> None:
    watch = collector_factory(broker.port, STATUS)
    agent = start(tmp_path, broker, agent_factory, watch, policies=True,
                  policy__engine="rules", model__path=str(tmp_path / "no-model.gguf"))
    before = rss(agent)
    state = json.dumps({"action": "cool", "value": 22.0, "ts": time.time(),
                        "command_id": None}).encode()
    stored = int(last_status(watch)["readings_total"])
    flood(watch, ((f"{PREFIX}/actuators/fake-{i}/hvac-{i}/state", state) for i in range(60_000)))
    watch.publish(f"{PREFIX}/sensors/marker-1/temperature", b"21.0")  # after the flood, in order
    wait_for(marker_stored(watch, stored), timeout=300, what="the marker after the flood")
    after = rss(agent)
    record("states of unknown actuators x60000", before, after)
    assert after - before < 15 * MIB, f"RSS grew by {(after - before) / MIB:.1f} MiB"
    assert agent.alive()


def test_a_qos0_flood_faster_than_ingest_is_dropped_not_queued(
    tmp_path: Path,
    broker: Mosquitto,
    agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector],
) -> None:
    # one commit per reading (batch_size 1, synchronous full): ingest far slower than the wire
    watch = collector_factory(broker.port, STATUS)
    agent = start(tmp_path, broker, agent_factory, watch,
                  storage__batch_size=1)
    before = rss(agent)
    pad = "x" * 3500  # valid readings just under max_payload_bytes (4096)
    with peak_rss(agent) as peak:
        flood(watch, ((f"{PREFIX}/sensors/dev-{i % 20}/temperature",
                       json.dumps({"value": 20.0 + i % 5, "pad": pad}).encode())
                      for i in range(40_000)), qos=0)
        wait_for(lambda: int(last_status(watch)["queue_depth"]) == 0
                 and last_status(watch)["ts"] > time.time() - 2, timeout=600,
                 what="the ingest queue drained")
    record("QoS 0 flood x40000 of 3.5 KB, batch_size 1", before, peak[0])
    assert peak[0] - before < 40 * MIB, f"RSS peaked {(peak[0] - before) / MIB:.1f} MiB higher"
    # what was dropped is counted (how much depends on how fast this disk commits)
    assert int(last_status(watch)["dropped_total"]) >= 0
    assert agent.alive()


@pytest.mark.parametrize(
    ("overrides", "size", "count"),
    [
        # model updates on (a command key): chunks of up to 8 MiB are taken, nothing larger
        ({}, 9 * MIB, 10),
        # sensors only: max_payload_bytes (4 KiB) and room for the topic. 300 QoS 1 messages
        # over it also stick Mosquitto 2.0's window (it never frees the slots of what it
        # dropped): the marker gets through only because the agent's probe finds that out
        # and reconnects
        ({"security__command_key_file": None}, 64 << 10, 300),
    ],
    ids=["model-updates-on", "sensors-only"],
)
def test_a_message_over_the_packet_limit_never_reaches_the_agent(
    tmp_path: Path,
    broker: Mosquitto,
    agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector],
    overrides: dict[str, Any],
    size: int,
    count: int,
) -> None:
    watch = collector_factory(broker.port, STATUS, ERRORS)
    agent = start(tmp_path, broker, agent_factory, watch, **overrides)
    before = rss(agent)
    stored = int(last_status(watch)["readings_total"])
    with peak_rss(agent) as peak:
        for _ in range(count):
            watch.publish(f"{PREFIX}/sensors/dev-1/temperature", b"1" * size).wait_for_publish(60)
        watch.publish(f"{PREFIX}/sensors/dev-1/temperature", b"21.0")
        wait_for(marker_stored(watch, stored), timeout=120, what="the marker reading")
    record(f"{count} messages of {size} bytes", before, peak[0])
    too_large = [e for e in watch.on(ERRORS) if "exceeds" in e["error"]]
    assert not too_large, f"the agent was sent {len(too_large)} messages over its limit"
    assert peak[0] - before < 20 * MIB, f"RSS peaked {(peak[0] - before) / MIB:.1f} MiB higher"
    assert agent.alive()
