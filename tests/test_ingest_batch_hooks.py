"""A committed batch acknowledged in one call, and diagnosis shown every sensor message once,
from the batch ingest parsed (a real SQLite file)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import cast

from agent.config import parse_config
from agent.mqtt import Message
from agent.pipeline.core import Pipeline
from agent.service.ingest import Arrival, Ingestor
from agent.storage import Store
from tests.helpers import db_rows

TOPIC = "edge/sensors/dev-1/temperature"


def wait_until(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def msg(mid: int, payload: bytes, topic: str = TOPIC) -> Message:
    return Message(topic, payload, 1, mid, time.time(), 1)


def test_a_batch_is_acknowledged_at_once_after_its_commit_and_shown_to_diagnosis(
    tmp_path: Path,
) -> None:
    cfg = parse_config(json.dumps({
        "agent": {"data_dir": str(tmp_path)},
        "sensors": {"temperature": {"unit": "C", "range": [-40, 85]}},
        "storage": {"batch_size": 50, "batch_interval": "50ms"},
    }))
    store = Store(cfg.db_path)
    batches: list[tuple[list[int], int]] = []  # (mids, rows on disk when acknowledged)
    seen: list[Arrival] = []
    rejects: list[str] = []

    def committed() -> int:
        return cast(int, db_rows(cfg.db_path, "SELECT count(*) FROM readings")[0][0])

    ingestor = Ingestor(store, Pipeline(cfg), prefix="edge", max_payload_bytes=64,
                        batch_size=50, batch_interval=0.05,
                        ack=lambda m: None,
                        ack_all=lambda ms: batches.append(([m.mid for m in ms], committed())),
                        observe=seen.extend,
                        on_reject=lambda m, why: rejects.append(why))
    messages = [
        msg(1, b'{"value": 21.5, "unit": "C", "seq": 1}'),
        msg(2, b'{"value": 70.7, "unit": "F", "seq": 2}'),  # 21.5 C
        msg(3, b'{"value": 21.5, "unit": "C", "seq": 1}'),  # a redelivered duplicate
        msg(4, b'{"value": 99}'),  # out of range
        msg(5, b"not json"),
        msg(6, b"x" * 100),  # too large: cut to its excerpt on arrival
        msg(7, b"21", topic="edge/other/thing"),  # no series at all
    ]
    for m in messages:  # queued before the thread starts: one batch
        ingestor.submit(m)
    ingestor.start()
    wait_until(lambda: len(rejects) == 4)
    ingestor.stop()
    assert batches == [([1, 2, 3, 4, 5, 6, 7], 2)]  # one call, after both rows were committed
    assert [(a.device, a.quantity) for a in seen] == [("dev-1", "temperature")] * 6
    values = [a.value if a.value is not None else a.reading for a in seen]
    assert values[0] == 21.5 and abs(values[1] - 21.5) < 1e-9  # type: ignore[operator]
    assert seen[2].value is None and seen[2].reading is not None  # duplicate: diagnosis converts
    assert seen[3].value is None and seen[3].reading is not None  # out of range: the same
    assert seen[4].reading is None and seen[5].reading is None  # unusable: the device is alive
    assert store.count() == 2
