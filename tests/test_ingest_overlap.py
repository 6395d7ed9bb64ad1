"""Driven by the network thread, ingest commits a batch on a committer thread of its own while
the network thread reads and parses the next one: acknowledged only after the commit, in order,
one commit at a time, and nothing else touches the database meanwhile. A real SQLite file
whose commits are held at a gate (a slow disk, held still)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

import pytest

from agent.config import parse_config
from agent.errors import StorageError
from agent.mqtt import Message
from agent.pipeline.core import Pipeline, Processed
from agent.service.ingest import Ingestor
from agent.storage import Store
from tests.helpers import db_rows

TOPIC = "edge/sensors/dev-1/temperature"


class GatedStore(Store):
    """A real store whose writes wait until ``gate`` is open, and can be told to fail."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.gate.set()
        self.writes = 0  # writes begun
        self.threads: set[str] = set()
        self.failures = 0  # the next writes that fail (a disk error cannot be made for real)

    def write(self, rows: Sequence[Processed]) -> int:
        self.writes += 1
        self.threads.add(threading.current_thread().name)
        assert self.gate.wait(10)
        if self.failures:
            self.failures -= 1
            raise StorageError("disk I/O error")
        return super().write(rows)


class Driver:
    """What the MQTT client's network thread does: drain each time it is woken."""

    def __init__(self, ingestor: Ingestor) -> None:
        self.ingestor = ingestor
        self.woken = threading.Event()
        self.drains = 0  # drains that returned
        self.thread = threading.Thread(target=self._run, name="network", daemon=True)

    def _run(self) -> None:
        while not self.ingestor._stopped.is_set():
            self.woken.wait()
            self.woken.clear()
            self.ingestor.drain()
            self.drains += 1

    def drain(self) -> None:
        """Wake the driver (the socket went quiet) and wait until that drain has returned."""
        before = self.drains
        self.woken.set()
        wait_until(lambda: self.drains > before)


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        cfg = parse_config(json.dumps({
            "agent": {"data_dir": str(tmp_path)},
            "sensors": {"temperature": {"unit": "C", "range": [-40, 85]}},
        }))
        self.db_path = cfg.db_path
        self.store = GatedStore(cfg.db_path)
        self.acks: list[tuple[int, int]] = []  # (mid, rows committed when it was acknowledged)
        self.stored: list[int] = []  # rows per on_stored call
        self.rejects: list[str] = []
        self.wakes = 0
        self.ingestor = Ingestor(
            self.store, Pipeline(cfg), prefix="edge", max_payload_bytes=4096, batch_size=50,
            batch_interval=0.05, ack=lambda m: None,
            ack_all=lambda ms: self.acks.extend((m.mid, self.committed()) for m in ms),
            on_stored=lambda rows: self.stored.append(len(rows)),
            on_reject=lambda m, why: self.rejects.append(why))
        self.ingestor.overlap_from = 1  # small batches here: overlap them all
        self.driver = Driver(self.ingestor)
        self.ingestor.start(wake=self._wake)
        self.driver.thread.start()

    def _wake(self) -> None:
        self.wakes += 1
        self.driver.woken.set()

    def committed(self) -> int:
        return cast(int, db_rows(self.db_path, "SELECT count(*) FROM readings")[0][0])

    def submit(self, *mids: int) -> None:
        for mid in mids:
            payload = json.dumps({"value": 20 + mid / 100, "seq": mid}).encode()
            self.ingestor.submit(Message(TOPIC, payload, 1, mid, time.time(), 1))

    def mids(self) -> list[int]:
        return [mid for mid, _ in self.acks]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    yield rig
    rig.store.gate.set()
    rig.ingestor.stop()
    rig.driver.thread.join(10)


def wait_until(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def test_the_network_thread_reads_on_while_a_batch_commits_and_acks_wait_for_it(
        rig: Rig) -> None:
    rig.store.gate.clear()
    rig.submit(1, 2, 3)
    rig.driver.drain()  # returns with the commit still held at the gate
    assert rig.store.writes == 1 and rig.acks == [] and rig.stored == []
    assert rig.ingestor.depth() == 3, "a batch stuck in its commit is work waiting"
    rig.store.gate.set()  # the commit ends: the committer wakes the driver to acknowledge
    wait_until(lambda: rig.mids() == [1, 2, 3])
    assert all(rows == 3 for _, rows in rig.acks), "acknowledged only once committed"
    assert rig.stored == [3] and rig.ingestor.depth() == 0 and rig.wakes >= 1
    assert rig.store.threads == {"ingest-commit"}
    assert rig.ingestor.rows_total == 3 == rig.ingestor.counters.stored


def test_one_commit_at_a_time_and_batches_acknowledged_in_order(rig: Rig) -> None:
    rig.store.gate.clear()
    rig.submit(1, 2)
    rig.driver.drain()
    rig.submit(3, 4, 5)
    rig.driver.woken.set()  # the next batch is parsed, then waits for the first commit
    wait_until(lambda: rig.ingestor.counters.received == 5)
    assert rig.store.writes == 1 and rig.acks == []
    rig.store.gate.set()
    wait_until(lambda: len(rig.acks) == 5)
    assert rig.mids() == [1, 2, 3, 4, 5]
    assert [rows for _, rows in rig.acks] == [2, 2, 5, 5, 5]
    assert rig.stored == [2, 3] and rig.ingestor.counters.batches == 2


def test_a_task_runs_only_after_the_commit_in_flight(rig: Rig) -> None:
    rig.store.gate.clear()
    rig.submit(1, 2, 3)
    rig.driver.drain()
    seen = rig.ingestor.call(lambda: (rig.store.count(), rig.mids()))
    rig.driver.woken.set()  # the driver takes the task: it waits for the commit
    assert not seen.done()
    rig.store.gate.set()
    assert seen.result(10) == (3, [1, 2, 3])


def test_a_task_called_on_the_network_thread_waits_for_the_commit_too(rig: Rig) -> None:
    rig.store.gate.clear()
    rig.submit(1, 2)
    rig.driver.drain()
    inline = rig.ingestor.call(  # a handler on the network thread calls in turn: run at once
        lambda: rig.ingestor.call(lambda: (rig.store.count(), rig.mids())).result(0))
    rig.store.gate.set()
    rig.driver.woken.set()
    assert inline.result(10) == (2, [1, 2])


def test_stop_commits_and_acknowledges_the_batch_in_flight_and_what_is_queued(
        rig: Rig) -> None:
    rig.store.gate.clear()
    rig.submit(1, 2, 3)
    rig.driver.drain()
    rig.submit(4)
    rig.ingestor.submit(Message(TOPIC, b"not json", 1, 5, time.time(), 1))
    stopper = threading.Thread(target=rig.ingestor.stop)
    stopper.start()
    rig.store.gate.set()
    stopper.join(10)
    assert rig.ingestor._stopped.is_set()
    assert rig.mids() == [1, 2, 3, 4, 5] and rig.store.count() == 4 == rig.committed()
    assert len(rig.rejects) == 1


def test_a_failing_commit_is_retried_and_nothing_is_acknowledged_meanwhile(rig: Rig) -> None:
    rig.store.failures = 2
    rig.submit(1)
    rig.driver.drain()
    wait_until(lambda: rig.store.writes >= 2)  # failed once, and the retry fails again
    assert rig.acks == []
    wait_until(lambda: rig.mids() == [1])
    assert rig.store.writes == 3 and rig.committed() == 1


def test_a_redelivery_is_stored_once_across_overlapping_batches(rig: Rig) -> None:
    rig.store.gate.clear()
    rig.submit(1, 2)
    rig.driver.drain()
    rig.submit(2, 3)  # 2 again: redelivered while its first copy is being committed
    rig.driver.woken.set()
    rig.store.gate.set()
    wait_until(lambda: len(rig.acks) == 4)
    assert rig.mids() == [1, 2, 2, 3] and rig.committed() == 3
    assert rig.ingestor.counters.duplicates == 1 and rig.rejects == []


def test_the_reconnect_for_what_the_broker_owes_waits_for_every_acknowledgement(
        rig: Rig) -> None:
    """A broker that broke our receive maximum: the reconnect that has it send again what we
    refused comes once all we held is acknowledged, including a batch still committing when
    the queue ran dry (a reconnect drops the acknowledgements still to come)."""
    reconnects: list[int] = []
    rig.ingestor.hard_limit = 3
    rig.ingestor._on_redeliver = lambda: reconnects.append(len(rig.acks))
    rig.store.gate.clear()
    rig.submit(1, 2, 3, 4, 5)  # 4 and 5 are over the hard limit: left for the broker
    rig.driver.drain()
    rig.submit(6)
    rig.driver.woken.set()  # 6 is taken: the queue is empty, 6 waits for the first commit
    wait_until(lambda: rig.ingestor.counters.received == 4)
    rig.store.gate.set()
    wait_until(lambda: len(rig.acks) == 4)
    wait_until(lambda: reconnects == [4])
    assert rig.mids() == [1, 2, 3, 6] and rig.ingestor.counters.deferred == 2


def test_a_small_batch_from_a_quiet_socket_commits_inline(rig: Rig) -> None:
    rig.ingestor.overlap_from = 3
    rig.submit(1, 2)
    rig.driver.drain()
    assert rig.mids() == [1, 2] and rig.store.threads == {"network"}
    rig.submit(3, 4, 5)
    rig.driver.drain()
    wait_until(lambda: len(rig.acks) == 5)
    assert rig.store.threads == {"network", "ingest-commit"}
