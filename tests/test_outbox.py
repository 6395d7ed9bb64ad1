"""The durable outbox on a real broker and a real SQLite file: recorded before it is published,
one command per decision, delivered once acknowledged, resent after a restart under the same id,
dropped when expired."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from agent.broker import Mosquitto
from agent.service.outbox import Outbox
from agent.storage import Store
from tests.conftest import Collector, wait_for
from tests.helpers import Clock

pytestmark = pytest.mark.broker
TOPIC = "edge/actuators/livingroom-hvac/hvac/set"


@pytest.fixture
def db_thread() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:  # the one thread that owns the database
        yield pool


def command(n: int, ts: float, ttl: float = 30.0) -> dict[str, object]:
    return {"id": f"cmd-{n}", "action": "cool", "value": 22.0, "ts": ts, "expires": ts + ttl,
            "nonce": f"{n:016x}", "sig": "ab" * 32}


def states(store: Store, pool: ThreadPoolExecutor) -> list[tuple[str, str]]:
    return pool.submit(lambda: [(r.id, r.state) for r in store.outbox_rows(100)]).result()


def listening(watch: Collector, sender: Collector) -> None:
    """Wait until ``watch``'s subscription is in place: a probe through the broker arrives."""
    deadline = time.monotonic() + 20
    while not any(topic == "test/probe" for topic, _, _ in list(watch.messages)):
        assert time.monotonic() < deadline, "the collector never subscribed"
        sender.publish("test/probe", b"1")
        time.sleep(0.1)


def make(tmp_path: Path, publisher: Collector, pool: ThreadPoolExecutor,
         clock: Callable[[], float]) -> tuple[Outbox, Store]:
    store = pool.submit(Store, tmp_path / "agent.db").result()
    return Outbox(publisher.client, pool.submit, store, clock), store


def test_recorded_published_and_marked_delivered(
        tmp_path: Path, broker: Mosquitto, collector_factory: Callable[..., Collector],
        db_thread: ThreadPoolExecutor) -> None:
    watch = collector_factory(broker.port, TOPIC, "test/probe")
    sender = collector_factory(broker.port)
    listening(watch, sender)
    clock = Clock(1_764_370_000.0)
    outbox, store = make(tmp_path, sender, db_thread, clock)
    assert outbox.send(command(1, clock.now), "decision-1", TOPIC)
    wait_for(lambda: len(watch.on(TOPIC)) == 1, what="the command on the wire")
    assert watch.on(TOPIC)[0] == command(1, clock.now)
    wait_for(lambda: outbox.poll() == 1 or outbox.delivered == 1, what="the broker's PUBACK")
    assert outbox.depth == 0
    wait_for(lambda: states(store, db_thread) == [("cmd-1", "delivered")], what="delivered row")


def test_one_command_per_decision(
        tmp_path: Path, broker: Mosquitto, collector_factory: Callable[..., Collector],
        db_thread: ThreadPoolExecutor) -> None:
    watch = collector_factory(broker.port, TOPIC, "test/probe")
    sender = collector_factory(broker.port)
    listening(watch, sender)
    clock = Clock(1_764_370_000.0)
    outbox, store = make(tmp_path, sender, db_thread, clock)
    assert outbox.send(command(1, clock.now), "decision-1", TOPIC)
    assert not outbox.send(command(2, clock.now), "decision-1", TOPIC)  # same decision
    assert outbox.send(command(3, clock.now), "decision-2", TOPIC)
    wait_for(lambda: len(watch.on(TOPIC)) == 2, what="two commands")
    assert [c["id"] for c in watch.on(TOPIC)] == ["cmd-1", "cmd-3"]
    assert {i for i, _ in states(store, db_thread)} == {"cmd-1", "cmd-3"}


def test_a_restart_resends_the_same_bytes_and_drops_what_expired(
        tmp_path: Path, broker: Mosquitto, collector_factory: Callable[..., Collector],
        db_thread: ThreadPoolExecutor) -> None:
    """Recorded but never published (the agent died between the two): the next start sends it
    under the same id, nonce and signature; an expired one is marked expired, not sent."""
    clock = Clock(1_764_370_000.0)
    store = db_thread.submit(Store, tmp_path / "agent.db").result()
    from agent.storage import OutboxRow

    for n, ttl in [(1, 30.0), (2, 1.0), (3, 30.0)]:
        c = command(n, clock.now, ttl)
        row = OutboxRow(str(c["id"]), f"decision-{n}", TOPIC, json.dumps(c), clock.now,
                        clock.now + ttl)
        assert db_thread.submit(store.outbox_add, row).result()
    clock.now += 5.0  # command 2 expired meanwhile
    watch = collector_factory(broker.port, TOPIC, "test/probe")
    sender = collector_factory(broker.port)
    listening(watch, sender)
    outbox = Outbox(sender.client, db_thread.submit, store, clock)
    outbox.resume()
    wait_for(lambda: len(watch.on(TOPIC)) == 2, what="the resent commands")
    assert watch.on(TOPIC) == [command(1, clock.now - 5.0), command(3, clock.now - 5.0, 30.0)]
    assert outbox.expired == 1
    wait_for(lambda: outbox.poll() >= 0 and outbox.depth == 0, what="both acknowledged")
    wait_for(lambda: dict(states(store, db_thread)) == {
        "cmd-1": "delivered", "cmd-2": "expired", "cmd-3": "delivered"}, what="row states")
