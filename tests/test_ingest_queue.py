"""The queue between the network thread and the ingest thread is bounded (attack 6): QoS 0
beyond ``queue_limit`` is dropped and counted, QoS 1 is always queued (the broker's receive
maximum bounds it) up to a hard limit only a misbehaving broker meets, and a payload over
``max_payload_bytes`` waits as its excerpt, not whole. Real SQLite, no mocks."""

from __future__ import annotations

import time
from pathlib import Path

from agent.config import parse_config
from agent.mqtt import Message
from agent.pipeline.core import Pipeline
from agent.service.ingest import Ingestor
from agent.storage import Store

TOPIC = "edge/sensors/dev-1/temperature"


def make(tmp_path: Path, acks: list[int], rejects: list[str]) -> Ingestor:
    cfg = parse_config(f"agent: {{data_dir: {tmp_path}}}\n")
    return Ingestor(Store(cfg.db_path), Pipeline(cfg), prefix="edge", max_payload_bytes=4096,
                    batch_size=50, batch_interval=0.05,
                    ack=lambda m: acks.append(m.mid) if m.qos else None,
                    on_reject=lambda m, why: rejects.append(why), queue_limit=10, hard_limit=15)


def msg(mid: int, qos: int, payload: bytes = b"21.5") -> Message:
    return Message(TOPIC, payload, qos, mid, time.time(), 1)


def wait(predicate: object) -> None:
    deadline = time.monotonic() + 10
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_qos0_over_the_limit_is_dropped_and_qos1_is_kept(tmp_path: Path) -> None:
    acks: list[int] = []
    ingest = make(tmp_path, acks, [])  # not started: nothing drains while the flood arrives
    taken = [ingest.submit(msg(i, 0)) for i in range(100)]
    assert taken.count(True) == 10 and ingest.counters.dropped == 90
    assert all(ingest.submit(msg(1000 + i, 1)) for i in range(5)), "QoS 1 is never dropped"
    assert ingest.depth() == 15 and acks == []
    ingest.start()
    wait(lambda: len(acks) == 5)
    ingest.stop()
    assert sorted(acks) == [1000 + i for i in range(5)] and ingest.rows_total == 15


def test_qos1_over_the_hard_limit_is_left_for_the_broker_to_send_again(tmp_path: Path) -> None:
    """A broker that breaks our receive maximum: what is over the hard limit is neither held
    nor acknowledged (an acknowledged message the agent never stored would be lost); once the
    queue has drained the agent reconnects, and the broker sends it again."""
    acks: list[int] = []
    reconnects: list[int] = []
    ingest = make(tmp_path, acks, [])
    ingest._on_redeliver = lambda: reconnects.append(len(acks))
    taken = [ingest.submit(msg(i, 1)) for i in range(20)]
    assert taken.count(True) == 15 and ingest.counters.deferred == 5
    assert ingest.counters.dropped == 0 and acks == []
    ingest.start()
    wait(lambda: reconnects == [15])  # the 15 it held, committed and acknowledged first
    assert sorted(acks) == list(range(15))
    ingest.stop()


def test_an_oversized_payload_waits_as_its_excerpt(tmp_path: Path) -> None:
    acks: list[int] = []
    rejects: list[str] = []
    ingest = make(tmp_path, acks, rejects)
    assert ingest.submit(msg(1, 1, b"9" * 1_000_000))
    item = ingest._queue.get_nowait()
    held = getattr(item, "msg", item)
    assert isinstance(held, Message) and len(held.payload) <= 200
    ingest._queue.put(item)
    ingest.start()
    wait(lambda: acks == [1])
    ingest.stop()
    assert rejects == ["payload of 1000000 bytes exceeds max_payload_bytes (4096)"]
    assert ingest.counters.rejected_by_reason == {"too-large": 1}
