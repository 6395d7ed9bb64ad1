"""The ingest thread with a real SQLite file: acknowledged only after committed."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from agent.config import parse_config
from agent.errors import StorageError
from agent.mqtt import Message
from agent.pipeline.core import Pipeline
from agent.service.ingest import Ingestor
from agent.storage import Store

TOPIC = "edge/sensors/dev-1/temperature"


def make(tmp_path: Path, **storage: object) -> tuple[Ingestor, Store, list[tuple[int, int]],
                                                      list[tuple[str, str]]]:
    cfg = parse_config(json.dumps({
        "agent": {"data_dir": str(tmp_path)},
        "sensors": {"temperature": {"unit": "C", "range": [-40, 85]}},
        "storage": {"batch_size": 50, "batch_interval": "50ms", **storage},
    }))
    store = Store(cfg.db_path)
    acks: list[tuple[int, int]] = []  # (mid, rows committed when it was acknowledged)
    rejects: list[tuple[str, str]] = []

    def committed() -> int:
        conn = sqlite3.connect(cfg.db_path)
        try:
            return int(conn.execute("SELECT count(*) FROM readings").fetchone()[0])
        finally:
            conn.close()

    ingestor = Ingestor(store, Pipeline(cfg), prefix="edge", max_payload_bytes=4096,
                        batch_size=cfg.storage.batch_size,
                        batch_interval=cfg.storage.batch_interval,
                        ack=lambda m: acks.append((m.mid, committed())),
                        on_reject=lambda m, why: rejects.append((m.topic, why)))
    return ingestor, store, acks, rejects


def msg(mid: int, payload: bytes, topic: str = TOPIC, qos: int = 1) -> Message:
    return Message(topic, payload, qos, mid, time.time(), 1)


def wait_until(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_every_message_is_acknowledged_after_its_row_is_committed(tmp_path: Path) -> None:
    ingestor, store, acks, _ = make(tmp_path)
    ingestor.start()
    for i in range(120):
        ingestor.submit(msg(i + 1, json.dumps({"value": 20 + i / 100, "seq": i}).encode()))
    wait_until(lambda: len(acks) == 120)
    ingestor.stop()
    assert [mid for mid, _ in acks] == list(range(1, 121))
    assert all(rows >= mid for mid, rows in acks)  # message n acknowledged with >= n rows on disk
    assert store.count() == 120 == ingestor.rows_total


def test_batches_are_bounded_by_size(tmp_path: Path) -> None:
    ingestor, _store, acks, _ = make(tmp_path)
    for i in range(200):  # queued before the thread starts: batches fill up to batch_size
        ingestor.submit(msg(i + 1, json.dumps({"value": 21.0, "seq": i}).encode()))
    ingestor.start()
    wait_until(lambda: len(acks) == 200)
    ingestor.stop()
    assert ingestor.counters.batches == 4


def test_rejected_and_duplicate_messages_are_acknowledged_and_not_stored(tmp_path: Path) -> None:
    ingestor, store, acks, rejects = make(tmp_path)
    ingestor.start()
    good = json.dumps({"value": 21.5, "seq": 7, "ts": time.time()}).encode()
    ingestor.submit(msg(1, good))
    ingestor.submit(msg(2, good))  # a redelivery
    ingestor.submit(msg(3, b"not json"))
    ingestor.submit(msg(4, b"200"))  # out of range
    ingestor.submit(msg(5, b"21", topic="edge/sensors/dev-1"))
    wait_until(lambda: len(acks) == 5)
    ingestor.stop()
    assert store.count() == 1
    assert ingestor.counters.duplicates == 1
    assert [why.split(":")[0] for _, why in rejects] == [
        "payload is not a number or JSON", "value 200 C is outside the plausible range [-40, 85]",
        "topic is not edge/sensors/{device}/{quantity}"]
    assert ingestor.counters.rejected_by_reason == {"malformed": 1, "out-of-range": 1,
                                                     "topic": 1}


def test_a_failing_write_is_retried_and_nothing_is_acknowledged_meanwhile(
        tmp_path: Path) -> None:
    ingestor, store, acks, _ = make(tmp_path)
    real_write = store.write
    failures = [2]
    gate = threading.Event()

    def flaky(rows: list[object]) -> int:  # a disk that fails twice (cannot be made for real)
        if failures[0]:
            failures[0] -= 1
            if not failures[0]:
                gate.set()
            raise StorageError("disk I/O error")
        return real_write(rows)  # type: ignore[arg-type]

    store.write = flaky  # type: ignore[method-assign,assignment]
    ingestor.start()
    ingestor.submit(msg(1, b'{"value": 20.0, "seq": 1}'))
    gate.wait(5)
    assert acks == []
    wait_until(lambda: len(acks) == 1)
    ingestor.stop()
    assert store.count() == 1


def test_tasks_run_on_the_ingest_thread_between_batches(tmp_path: Path) -> None:
    ingestor, _store, acks, _ = make(tmp_path)
    ingestor.start()
    ingestor.submit(msg(1, b'{"value": 20.0, "seq": 1}'))
    name = ingestor.call(lambda: threading.current_thread().name).result(5)
    ingestor.stop()
    assert name == "ingest"
    assert len(acks) == 1


def test_driven_by_another_thread_tasks_and_stop_run_on_that_thread(tmp_path: Path) -> None:
    ingestor, store, acks, _ = make(tmp_path)
    woken = threading.Event()
    ingestor.start(wake=woken.set)  # no thread of its own: the driver (here: one below) drains
    names: list[str] = []

    def driver() -> None:  # what the MQTT client's network thread does
        while not ingestor._stopped.is_set():
            woken.wait(5)
            woken.clear()
            ingestor.drain()

    thread = threading.Thread(target=driver, name="network")
    thread.start()
    ingestor.submit(msg(1, b'{"value": 20.0, "seq": 1}'))
    nested = ingestor.call(lambda: ingestor.call(lambda: names.append("inner")).result(0))
    woken.set()
    nested.result(5)  # a task that waits on a task: run at once on the draining thread
    names.append(ingestor.call(lambda: threading.current_thread().name).result(5))
    ingestor.submit(msg(2, b'{"value": 20.5, "seq": 2}'))
    ingestor.stop()  # commits and acknowledges what was queued, on the driver's thread
    thread.join(5)
    assert names == ["inner", "network"]
    assert [mid for mid, _ in acks] == [1, 2] and store.count() == 2
