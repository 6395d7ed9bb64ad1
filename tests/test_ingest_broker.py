"""The agent against a real Mosquitto, as a real process, with a real SQLite file."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.broker import Mosquitto
from tests import helpers
from tests.conftest import AgentProcess, Collector, agent_config, wait_for, wait_online
from tests.conftest import start_agent as start
from tests.helpers import Partition, mqtt5_publishes, publish_paced

pytestmark = pytest.mark.broker

TOPIC = "edge/sensors/dev-1/temperature"
STATUS = "edge/agents/test-agent/status"
ERRORS = "edge/agents/test-agent/errors"


def db_rows(tmp_path: Path, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    return helpers.db_rows(tmp_path / "data" / "edge-agent.db", sql, args)


def stored(tmp_path: Path) -> int:
    rows = db_rows(tmp_path, "SELECT count(*) FROM readings")
    return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]


def start_agent(
    tmp_path: Path,
    broker: Mosquitto,
    agent_factory: Callable[[Path], AgentProcess],
    watch: Collector,
    **overrides: Any,
) -> AgentProcess:
    return start(agent_factory, agent_config(tmp_path, broker.port, **overrides), watch)


def test_both_payload_forms_are_stored_with_values_and_units(
    tmp_path: Path,
    broker: Mosquitto,
    agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector],
) -> None:
    watch = collector_factory(broker.port, STATUS)
    agent = start_agent(tmp_path, broker, agent_factory, watch)
    now = time.time()
    watch.publish(TOPIC, json.dumps({"value": 71.6, "ts": now - 5, "seq": 1, "unit": "F"}))
    watch.publish(TOPIC, b"22.5")
    watch.publish("edge/sensors/dev-1/humidity", json.dumps({"value": 0.5, "unit": "ratio"}))
    wait_for(lambda: stored(tmp_path) == 3, what="3 stored readings")
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0
    rows = db_rows(
        tmp_path,
        "SELECT quantity, ts, seq, raw, raw_unit, value, unit FROM readings "
        "JOIN series ON series.id = series_id ORDER BY readings.id",
    )
    (q1, ts1, seq1, raw1, ru1, v1, u1), (q2, ts2, seq2, raw2, ru2, v2, u2), hum = rows
    assert (q1, ts1, seq1, raw1, ru1, u1) == (
        "temperature",
        pytest.approx(now - 5),
        1,
        71.6,
        "F",
        "C",
    )
    assert v1 == pytest.approx(22.0)
    assert (q2, seq2, raw2, ru2, v2, u2) == ("temperature", None, 22.5, None, 22.5, "C")
    assert ts2 == pytest.approx(time.time(), abs=30)
    assert hum[0] == "humidity" and hum[5] == pytest.approx(50.0) and hum[6] == "%"


def test_every_bad_payload_gives_exactly_one_error_event(
    tmp_path: Path,
    broker: Mosquitto,
    agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector],
) -> None:
    from tests import payloads

    assert len(payloads.BAD_PAYLOADS) >= 25
    watch = collector_factory(broker.port, STATUS, ERRORS)
    agent = start_agent(tmp_path, broker, agent_factory, watch)
    bad_topics = ["edge/sensors/dev-1", "edge/sensors/dev-1/temperature/extra"]
    for _, payload in payloads.BAD_PAYLOADS:
        watch.publish(TOPIC, payload)
    for topic in bad_topics:
        watch.publish(topic, b"21.0")
    expected = len(payloads.BAD_PAYLOADS) + len(bad_topics)
    wait_for(lambda: len(watch.on(ERRORS)) >= expected, what="error events")
    watch.publish(TOPIC, json.dumps({"value": 21.0, "seq": 7}))
    wait_for(lambda: stored(tmp_path) == 1, what="the good reading after the bad ones")
    time.sleep(0.5)
    events = watch.on(ERRORS)
    assert len(events) == expected
    assert all(set(e) == {"ts", "topic", "error", "payload"} for e in events)
    assert all(e["error"] and "\n" not in e["error"] for e in events)
    assert [e["topic"] for e in events[-2:]] == bad_topics
    assert all(len(e["payload"].encode()) <= 4 * 200 for e in events)
    assert agent.alive()
    wait_for(
        lambda: watch.on(STATUS)[-1].get("rejected_total") == expected,
        what="rejected_total in the status",
    )


def test_sigterm_publishes_offline_status_and_exits_0(
    tmp_path: Path,
    broker: Mosquitto,
    agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector],
) -> None:
    watch = collector_factory(broker.port, STATUS)
    agent = start_agent(tmp_path, broker, agent_factory, watch)
    online = watch.on(STATUS)[-1]
    assert {
        "state",
        "ts",
        "version",
        "model",
        "model_sha256",
        "uptime_s",
        "readings_total",
        "rejected_total",
        "outbox_depth",
    } <= set(online)
    for i in range(20):
        watch.publish(TOPIC, json.dumps({"value": 20 + i / 10, "seq": i}))
    wait_for(lambda: stored(tmp_path) == 20)
    agent.signal(signal.SIGTERM)
    assert agent.wait(timeout=10) == 0
    late = collector_factory(broker.port, STATUS)  # a newcomer gets the retained status
    wait_for(lambda: bool(late.on(STATUS)), what="retained status")
    final = late.on(STATUS)[-1]
    assert final["state"] == "offline"
    assert final["readings_total"] == 20


def publish_stream(
    pub: Collector, n: int, start: int = 0, pause_every: int = 100, pause: float = 0.02
) -> list[object]:
    base = time.time() - 3600  # inside retention, and distinct per reading
    readings = (
        (TOPIC, json.dumps({"value": 20 + (seq % 50) / 10, "seq": seq, "ts": base + seq / 10}))
        for seq in range(start, start + n)
    )
    return publish_paced(pub, readings, pause_every, pause)


def assert_exactly_once(tmp_path: Path, n: int) -> None:
    total, distinct, lo, hi = db_rows(
        tmp_path, "SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM readings"
    )[0]
    assert (total, distinct, lo, hi) == (n, n, 0, n - 1)


def stored_seqs(tmp_path: Path) -> set[int]:
    return {int(seq) for (seq,) in db_rows(tmp_path, "SELECT seq FROM readings")}  # type: ignore[call-overload]


def settled(count: Callable[[], int], quiet: float = 0.5) -> int:
    """``count()`` once it has stopped changing for ``quiet`` seconds."""
    last, since = count(), time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.05)
        if (now := count()) != last:
            last, since = now, time.monotonic()
    return last


@pytest.mark.slow
def test_sigkill_with_committed_unacknowledged_readings_then_restart_stores_each_once(
    tmp_path: Path,
    broker: Mosquitto,
    agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector],
) -> None:
    """The agent reaches the broker through a real TCP hop. Mid-stream the hop stops passing
    what the agent sends (its PUBACKs), so whatever the agent commits from then on is committed
    but never acknowledged; it is killed with -9 in that state. Back, it is sent those readings
    again, and still stores every reading exactly once."""
    n = 3000
    hop = Partition(broker.port)
    try:
        watch = collector_factory(broker.port, STATUS)
        cfg = agent_config(tmp_path, hop.port)
        agent = agent_factory(cfg)
        wait_online(watch)
        pub = collector_factory(broker.port)
        publish_stream(pub, 600)
        wait_for(lambda: stored(tmp_path) >= 300, what="300 stored readings")
        hop.cut_upstream()  # from here on, no acknowledgement of the agent reaches the broker
        before = stored(tmp_path)
        publish_stream(pub, 600, start=600)
        wait_for(lambda: stored(tmp_path) > before, what="readings committed after the cut")
        committed = settled(lambda: stored(tmp_path))
        assert hop.dropped_bytes > 0  # the agent did acknowledge them: those PUBACKs were lost
        agent.kill()
        unacknowledged = committed - before
        assert unacknowledged > 0
        at_kill = stored_seqs(tmp_path)
        assert len(at_kill) == committed

        publish_stream(pub, n - 1200, start=1200)  # queued by the broker in the agent's session
        hop.record = True
        seen = len(watch.on(STATUS))
        agent_factory(cfg)
        wait_online(watch, since=seen)
        wait_for(lambda: stored(tmp_path) >= n, timeout=60, what=f"{n} stored readings")
        time.sleep(1.0)  # redeliveries still arriving must not add rows
        assert_exactly_once(tmp_path, n)
        resent = {
            json.loads(payload)["seq"]
            for _, topic, payload in mqtt5_publishes(bytes(hop.downstream))
            if topic == TOPIC
        }
        # the broker sent again readings the agent had committed before it was killed
        assert len(resent & at_kill) >= unacknowledged
    finally:
        hop.close()


@pytest.mark.slow
def test_broker_restart_mid_stream_loses_nothing(
    tmp_path: Path,
    broker: Mosquitto,
    agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector],
) -> None:
    n = 2000
    watch = collector_factory(broker.port, STATUS)
    agent = start_agent(tmp_path, broker, agent_factory, watch)
    pub = collector_factory(broker.port, client_id="test-publisher")
    publish_stream(pub, 800)
    wait_for(lambda: stored(tmp_path) >= 400, what="400 stored readings")
    broker.restart()  # SIGTERM: the broker saves sessions and queued messages, then comes back
    publish_stream(pub, n - 800, start=800)  # paho queues them until it is reconnected
    wait_for(lambda: stored(tmp_path) >= n, timeout=60, what=f"{n} stored readings")
    time.sleep(1.0)
    assert_exactly_once(tmp_path, n)
    assert agent.alive()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_readings_published_while_away_arrive_on_return(
    tmp_path: Path,
    broker: Mosquitto,
    agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector],
    protocol: str,
) -> None:
    watch = collector_factory(broker.port, STATUS)
    agent = start_agent(tmp_path, broker, agent_factory, watch, mqtt__protocol=protocol)
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0
    pub = collector_factory(broker.port)
    for info in publish_stream(pub, 100):
        info.wait_for_publish(10)  # type: ignore[attr-defined]
    assert stored(tmp_path) == 0
    start_agent(tmp_path, broker, agent_factory, watch, mqtt__protocol=protocol)
    wait_for(lambda: stored(tmp_path) == 100, what="100 readings queued while away")
    assert_exactly_once(tmp_path, 100)
