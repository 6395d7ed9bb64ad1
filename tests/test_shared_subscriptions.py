"""Two agent replicas split one sensor stream through an MQTT 5 shared subscription.

Both are real ``edge-agent run`` processes with their own id and data dir, subscribed to
``$share/ingest/edge/sensors/#`` on one real Mosquitto; each reading must end up in exactly
one of the two SQLite files.

What Mosquitto 2.0.11 does when a member dies (seen here and in its ``subs.c``): it hands
messages to the members of a share group strictly in turn, whether they are connected or
not. A member with a persistent session keeps what it had not acknowledged *and* keeps
receiving its turn of new messages while it is away; nothing moves to the other member
(eclipse-mosquitto/mosquitto#1747, #2662). The restarted replica, under the same id, gets
all of it. See config/mosquitto/BRIDGE.md.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.broker import Mosquitto
from tests.conftest import AgentProcess, Collector, agent_config, start_agent, wait_for
from tests.helpers import db_rows, publish_paced

pytestmark = [pytest.mark.broker, pytest.mark.slow]

GROUP_FILTER = "$share/ingest/edge/sensors/#"
DEVICES = [f"dev-{k}" for k in range(5)]
N = 5000
MARKER = "marker"  # a device of its own, published after the stream
Key = tuple[str, int]
ALL = {(DEVICES[i % len(DEVICES)], i // len(DEVICES)) for i in range(N)}


class Replica:
    """One ``edge-agent run`` in the share group, with its own id, config and data dir."""

    def __init__(self, tmp_path: Path, name: str, port: int) -> None:
        self.name = name
        self.home = tmp_path / name
        self.home.mkdir()
        self.config = agent_config(
            self.home, port, agent__id=name, mqtt__subscriptions=[GROUP_FILTER]
        )
        self.status = f"edge/agents/{name}/status"
        self.proc: AgentProcess | None = None

    def start(self, make: Callable[[Path], AgentProcess], watch: Collector) -> None:
        self.proc = start_agent(make, self.config, watch, self.name)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.signal(signal.SIGTERM)
        assert self.proc.wait() == 0

    def rows(self) -> list[Key]:
        """(device, seq) of every stored reading, duplicates and all."""
        sql = "SELECT device, seq FROM readings JOIN series ON series.id = series_id"
        return db_rows(self.home / "data" / "edge-agent.db", sql)  # type: ignore[return-value]

    def stored(self) -> set[Key]:
        return set(self.rows())


def publish_stream(pub: Collector, pause: float = 0.02) -> None:
    """The whole stream, round-robin over the devices, at QoS 1; returns once the broker
    has acknowledged every reading (pausing every 100: the test is about who, not how fast)."""
    base = time.time() - 3600  # inside retention; ts distinct per device and seq
    readings = []
    for i in range(N):
        device, seq = DEVICES[i % len(DEVICES)], i // len(DEVICES)
        payload = {"value": 20 + (seq % 50) / 10, "seq": seq, "ts": base + seq}
        readings.append((f"edge/sensors/{device}/temperature", json.dumps(payload)))
    for info in publish_paced(pub, readings, 100, pause):
        info.wait_for_publish(30)


def publish_markers(pub: Collector, seqs: range) -> None:
    """Readings after the stream: the one that reaches a replica shows it has drained what
    came before it (a replica receives and stores its messages in order)."""
    for seq in seqs:
        payload = json.dumps({"value": 21.0, "seq": seq})
        pub.publish(f"edge/sensors/{MARKER}/temperature", payload).wait_for_publish(30)


def stream(keys: set[Key]) -> set[Key]:
    return {k for k in keys if k[0] != MARKER}


def assert_each_stored_once(*replicas: Replica) -> list[set[Key]]:
    rows = [r.rows() for r in replicas]
    for r, got in zip(replicas, rows, strict=True):
        doubles = [k for k, n in Counter(got).items() if n > 1]
        assert doubles == [], f"{r.name} stored some readings twice"
    sets = [stream(set(got)) for got in rows]
    assert set.intersection(*sets) == set(), "a reading was stored by both replicas"
    assert set.union(*sets) == ALL
    return sets


def test_two_replicas_store_each_reading_exactly_once(
    tmp_path: Path,
    broker: Mosquitto,
    agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector],
) -> None:
    a, b = Replica(tmp_path, "replica-a", broker.port), Replica(tmp_path, "replica-b", broker.port)
    watch = collector_factory(broker.port, a.status, b.status)
    a.start(agent_factory, watch)
    b.start(agent_factory, watch)
    pub = collector_factory(broker.port)
    publish_stream(pub)
    wait_for(
        lambda: len(stream(a.stored() | b.stored())) == N, timeout=90, what=f"{N} readings stored"
    )
    time.sleep(1.0)  # a reading still on its way to the other replica must not show up there
    a.stop()
    b.stop()
    in_a, in_b = assert_each_stored_once(a, b)
    assert len(in_a) > N // 4 and len(in_b) > N // 4, (len(in_a), len(in_b))


def test_a_replica_killed_mid_stream_gets_its_share_when_it_returns(
    tmp_path: Path,
    broker: Mosquitto,
    agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector],
) -> None:
    a, b = Replica(tmp_path, "replica-a", broker.port), Replica(tmp_path, "replica-b", broker.port)
    watch = collector_factory(broker.port, a.status, b.status)
    a.start(agent_factory, watch)
    b.start(agent_factory, watch)
    pub = collector_factory(broker.port)
    publisher = threading.Thread(target=publish_stream, args=(pub, 0.05))
    publisher.start()
    wait_for(lambda: len(a.stored()) >= 300, what="replica-a storing")
    assert a.proc is not None
    a.proc.kill()  # SIGKILL mid-stream: some readings committed, unacknowledged or in flight
    killed_with = stream(a.stored())
    publisher.join()  # replica-a's turns of the rest wait in its session on the broker
    assert len(killed_with) < N // 2
    publish_markers(pub, range(2))  # one of two consecutive readings is replica-b's turn
    wait_for(lambda: bool(b.stored() - stream(b.stored())), what="replica-b past the stream")
    away = ALL - killed_with - stream(b.stored())
    # Mosquitto 2.0.11 hands none of replica-a's readings to replica-b: they wait for it.
    assert len(away) >= (N // 2 - len(killed_with)) // 2, len(away)

    a.start(agent_factory, watch)  # same id, same client id: the broker resumes its session
    wait_for(
        lambda: a.stored() | b.stored() >= ALL, timeout=90, what="the readings that waited for it"
    )
    publish_markers(pub, range(2, 4))  # and the group works as before
    wait_for(lambda: len((a.stored() | b.stored()) - ALL) == 4, what="the markers")
    time.sleep(1.0)  # redeliveries still arriving must not add rows
    a.stop()
    b.stop()
    in_a, _ = assert_each_stored_once(a, b)
    assert away <= in_a
    markers = [{k for k in r.stored() if k[0] == MARKER} for r in (a, b)]
    assert len(markers[0] | markers[1]) == 4 and not markers[0] & markers[1]
