"""The agent's SQLite file: WAL, migrations, batched writes, duplicates, queries, retention."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlite_utils

from agent.config import Config
from agent.errors import AgentError, StorageError
from agent.pipeline.core import Pipeline, Processed
from agent.pipeline.parse import Reading, parse_reading
from agent.storage import Store, StoredReading, migrations
from agent.storage.db import PRUNE_CHUNK
from agent.storage.migrations import MIGRATIONS, migrate

T0 = 1_764_370_000.0


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "edge-agent.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    s = Store(db_path)
    yield s
    s.close()


def row(
    value: float = 21.5,
    ts: float = T0,
    *,
    seq: int | None = None,
    sent: bool = True,
    device: str = "dev-1",
    quantity: str = "temperature",
    unit: str | None = "C",
    raw_unit: str | None = None,
    clean: float | None = None,
    outlier: bool = False,
    recv_ts: float | None = None,
) -> Processed:
    """A processed reading as the pipeline hands it to the store."""
    reading = Reading(
        device,
        quantity,
        value,
        raw_unit,
        ts,
        ts if sent else None,
        seq,
        ts if recv_ts is None else recv_ts,
    )
    return Processed(reading, unit, value, value if clean is None else clean, outlier, True)


def many(n: int, start: float = T0, seq: bool = True) -> list[Processed]:
    return [row(20.0 + (i % 100) / 10, start + i, seq=i if seq else None) for i in range(n)]


def pragma(store: Store, name: str) -> object:
    return store.conn.execute(f"PRAGMA {name}").fetchone()[0]


# -- opening ------------------------------------------------------------------------------------


def test_creates_the_directory_and_the_file(db_path: Path) -> None:
    assert not db_path.parent.exists()
    Store(db_path).close()
    assert db_path.is_file()


def test_wal_and_durability_pragmas(store: Store) -> None:
    assert pragma(store, "journal_mode") == "wal"
    assert pragma(store, "synchronous") == 2  # FULL
    assert pragma(store, "foreign_keys") == 1
    assert pragma(store, "auto_vacuum") == 2  # INCREMENTAL


def test_synchronous_normal(tmp_path: Path) -> None:
    s = Store(tmp_path / "n.db", synchronous="normal")
    assert pragma(s, "synchronous") == 1
    s.close()


def test_wal_is_recorded_in_the_file(db_path: Path) -> None:
    Store(db_path).close()
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_schema(store: Store) -> None:
    db = sqlite_utils.Database(store.conn)
    assert {"_migrations", "series", "readings"} <= set(db.table_names())
    assert [c.name for c in db["readings"].columns] == [
        "id",
        "series_id",
        "ts",
        "recv_ts",
        "sent_ts",
        "seq",
        "raw",
        "raw_unit",
        "value",
        "clean",
        "outlier",
    ]
    indexes = {i.name for i in db.table("readings").indexes}
    assert {"readings_series_ts", "readings_ts", "readings_dedup"} <= indexes


def test_unopenable_path_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError) as info:
        Store(blocker / "edge-agent.db")
    assert str(info.value).startswith(f"cannot open database {blocker / 'edge-agent.db'}: ")
    assert isinstance(info.value, AgentError)


def test_a_file_that_is_not_a_database_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "edge-agent.db"
    path.write_bytes(b"this is not an SQLite database, just some bytes" * 100)
    with pytest.raises(StorageError) as info:
        Store(path)
    assert str(info.value) == f"cannot open database {path}: file is not a database"


# -- migrations ---------------------------------------------------------------------------------


def test_migrations_are_registered_in_order() -> None:
    assert [name for name, _ in MIGRATIONS] == ["0001_readings", "0002_decisions",
                                               "0003_diagnosis_labels"]


ALL = [(name,) for name, _ in MIGRATIONS]


def test_migrations_are_recorded_once(db_path: Path) -> None:
    for _ in range(3):
        s = Store(db_path)
        names = s.conn.execute("SELECT name FROM _migrations").fetchall()
        assert names == ALL
        assert migrate(s.db) == []
        s.close()


def test_migrate_a_fresh_database() -> None:
    db = sqlite_utils.Database(memory=True)
    assert migrate(db) == ["0001_readings", "0002_decisions", "0003_diagnosis_labels"]
    assert migrate(db) == []
    assert {"series", "readings", "outbox", "audit", "examples",
            "diagnosis_labels"} <= set(db.table_names())


def test_a_failing_migration_is_rolled_back(monkeypatch: pytest.MonkeyPatch) -> None:
    def half_done(db: sqlite_utils.Database) -> None:
        db.execute("CREATE TABLE half (x)")
        raise RuntimeError("boom")

    db = sqlite_utils.Database(memory=True)
    monkeypatch.setattr(migrations, "MIGRATIONS", [*MIGRATIONS, ("0099_half", half_done)])
    with pytest.raises(RuntimeError, match="boom"):
        migrate(db)
    assert "half" not in db.table_names()
    assert db.execute("SELECT name FROM _migrations").fetchall() == ALL
    # the earlier migration stays applied, the failed one is retried next time
    monkeypatch.setattr(migrations, "MIGRATIONS", list(MIGRATIONS))
    assert migrate(db) == []


def test_data_survives_reopening(db_path: Path) -> None:
    s = Store(db_path)
    assert s.write(many(10)) == 10
    s.close()
    s = Store(db_path)
    assert s.count() == 10
    assert s.series() == [("dev-1", "temperature")]
    s.close()


# -- writing ----------------------------------------------------------------------------------


def test_write_returns_the_number_inserted(store: Store) -> None:
    assert store.write(many(3)) == 3
    assert store.write(many(3)) == 0
    assert store.write(many(4)) == 1
    assert store.count() == 4


def test_write_of_nothing(store: Store) -> None:
    assert store.write([]) == 0
    assert store.count() == 0


def test_redelivered_duplicates_are_stored_once(store: Store) -> None:
    batch = [row(21.5, T0, seq=7), row(21.6, T0 + 1, seq=8)]
    assert store.write(batch) == 2
    assert store.write(batch) == 0
    assert store.write([row(21.5, T0, seq=7), row(21.7, T0 + 2, seq=9)]) == 1
    assert store.count() == 3


def test_duplicates_inside_one_batch(store: Store) -> None:
    assert store.write([row(21.5, T0, seq=1), row(21.5, T0, seq=1), row(21.5, T0, seq=2)]) == 2


def test_same_seq_without_sent_ts_is_a_duplicate(store: Store) -> None:
    first = row(21.5, T0, seq=3, sent=False)
    again = row(21.5, T0 + 5, seq=3, sent=False)  # received later, same seq, no ts
    assert store.write([first]) == 1
    assert store.write([again]) == 0


def test_same_seq_with_another_sent_ts_is_new(store: Store) -> None:
    assert store.write([row(21.5, T0, seq=0)]) == 1
    assert store.write([row(21.5, T0 + 60, seq=0)]) == 1
    assert store.write([row(21.5, T0, seq=0, sent=False)]) == 1  # no ts is another key
    assert store.count() == 3


def test_readings_without_seq_are_never_deduplicated(store: Store) -> None:
    same = row(21.5, T0, seq=None)
    assert store.write([same, same]) == 2
    assert store.write([same]) == 1
    assert store.count() == 3


def test_same_seq_in_other_series_is_new(store: Store) -> None:
    assert (
        store.write(
            [row(seq=1), row(seq=1, device="dev-2"), row(seq=1, quantity="humidity", unit="%")]
        )
        == 3
    )
    assert store.series() == [
        ("dev-1", "humidity"),
        ("dev-1", "temperature"),
        ("dev-2", "temperature"),
    ]


def test_a_failed_write_is_a_storage_error(db_path: Path) -> None:
    s = Store(db_path)
    s.close()
    with pytest.raises(StorageError) as info:
        s.write(many(1))
    assert str(info.value).startswith(f"cannot write readings to {db_path}: ")


def test_what_the_pipeline_produces_is_stored(store: Store) -> None:
    pipeline = Pipeline(
        Config.model_validate({"sensors": {"temperature": {"unit": "C", "range": [-40, 85]}}})
    )
    reading = parse_reading(
        "edge/sensors/dev-1/temperature",
        b'{"value": 68, "unit": "F", "seq": 4, "ts": 1764369999.5}',
        T0,
        prefix="edge",
        max_bytes=4096,
    )
    processed = pipeline.process(reading)
    assert processed is not None
    assert store.write([processed]) == 1
    [stored] = store.recent()
    assert (stored.device, stored.quantity, stored.unit, stored.ts, stored.seq) == (
        "dev-1",
        "temperature",
        "C",
        1764369999.5,
        4,
    )
    assert (stored.raw, stored.raw_unit) == (68.0, "F")
    assert stored.value == pytest.approx(20.0, abs=1e-12)
    assert stored.clean == stored.value
    raw = store.conn.execute("SELECT recv_ts, sent_ts FROM readings").fetchone()
    assert raw == (T0, 1764369999.5)


# -- reading back -------------------------------------------------------------------------------


def test_recent_returns_the_newest_oldest_first(store: Store) -> None:
    store.write(
        [
            row(20.0, T0, seq=1, raw_unit="C"),
            row(99.0, T0 + 1, seq=2, clean=20.0, outlier=True),
            row(21.0, T0 + 2, seq=None, sent=False),
            row(55.0, T0 + 3, seq=1, device="dev-2", quantity="humidity", unit="%"),
        ]
    )
    assert store.recent(limit=2) == [
        StoredReading(3, "dev-1", "temperature", "C", T0 + 2, None, 21.0, None, 21.0, 21.0, False),
        StoredReading(4, "dev-2", "humidity", "%", T0 + 3, 1, 55.0, None, 55.0, 55.0, False),
    ]
    assert store.recent(device="dev-1") == [
        StoredReading(1, "dev-1", "temperature", "C", T0, 1, 20.0, "C", 20.0, 20.0, False),
        StoredReading(2, "dev-1", "temperature", "C", T0 + 1, 2, 99.0, None, 99.0, 20.0, True),
        StoredReading(3, "dev-1", "temperature", "C", T0 + 2, None, 21.0, None, 21.0, 21.0, False),
    ]
    assert [r.id for r in store.recent(quantity="humidity")] == [4]
    assert [r.id for r in store.recent(device="dev-2", quantity="temperature")] == []
    assert [r.id for r in store.recent(limit=1, device="dev-1", quantity="temperature")] == [3]


def test_points_since_in_time_order(store: Store) -> None:
    store.write(
        [
            row(3.0, T0 + 30, clean=3.5),
            row(1.0, T0 + 10, clean=1.5),
            row(2.0, T0 + 20, clean=2.5),
            row(9.0, T0 + 15, device="dev-2"),
        ]
    )
    assert store.points("dev-1", "temperature", since=T0 + 10) == [
        (T0 + 10, 1.0, 1.5),
        (T0 + 20, 2.0, 2.5),
        (T0 + 30, 3.0, 3.5),
    ]
    assert store.points("dev-1", "temperature", since=T0 + 10.5) == [
        (T0 + 20, 2.0, 2.5),
        (T0 + 30, 3.0, 3.5),
    ]
    assert store.points("dev-1", "humidity", since=0.0) == []


def test_recent_keys_are_the_last_sequenced_readings(store: Store) -> None:
    store.write(
        [
            row(seq=1),
            row(seq=2, ts=T0 + 1),
            row(seq=None, ts=T0 + 2),
            row(seq=3, ts=T0 + 3, sent=False),
            row(seq=4, ts=T0 + 4),
            row(seq=5, device="dev-2"),
        ]
    )
    assert store.recent_keys("dev-1", "temperature", limit=3) == [
        (2, T0 + 1),
        (3, None),
        (4, T0 + 4),
    ]
    assert store.recent_keys("dev-1", "temperature", limit=100) == [
        (1, T0),
        (2, T0 + 1),
        (3, None),
        (4, T0 + 4),
    ]
    assert store.recent_keys("dev-9", "temperature", limit=10) == []


def test_keys_and_points_restore_a_pipeline(store: Store) -> None:
    config = Config.model_validate({"sensors": {"temperature": {"deadband": 0.5}}})
    store.write([row(20.0, T0, seq=1), row(21.0, T0 + 30, seq=2)])
    pipeline = Pipeline(config)
    pipeline.seen("dev-1", "temperature", store.recent_keys("dev-1", "temperature", 4096))
    pipeline.restore("dev-1", "temperature", store.points("dev-1", "temperature", T0 - 900))
    again = Reading("dev-1", "temperature", 21.0, None, T0 + 30, T0 + 30, 2, T0 + 40)
    assert pipeline.process(again) is None
    nearby = pipeline.process(
        Reading("dev-1", "temperature", 21.2, None, T0 + 60, T0 + 60, 3, T0 + 60)
    )
    assert nearby is not None
    assert nearby.store is False  # within the deadband of the restored 21.0


# -- retention ----------------------------------------------------------------------------------


def test_prune_by_age(store: Store) -> None:
    store.write(
        [
            row(1.0, T0 - 100, seq=1),
            row(2.0, T0 - 60.5, seq=2),
            row(3.0, T0 - 60, seq=3),
            row(4.0, T0, seq=4),
        ]
    )
    assert store.prune(max_age=60.0, max_size=None, now=T0) == 2
    assert [r.seq for r in store.recent()] == [3, 4]
    assert store.prune(max_age=60.0, max_size=None, now=T0) == 0


def test_prune_by_age_in_chunks(store: Store) -> None:
    old = PRUNE_CHUNK * 2 + 17
    store.write(many(old, start=T0 - 100_000))
    store.write([row(1.0, T0, seq=None)])
    assert store.prune(max_age=3600.0, max_size=None, now=T0) == old
    assert store.count() == 1


def test_prune_with_no_bounds_deletes_nothing(store: Store) -> None:
    store.write(many(10, start=T0 - 10**7))
    assert store.prune(max_age=None, max_size=None, now=T0) == 0
    assert store.count() == 10


def test_prune_by_size_shrinks_used_bytes_below_the_bound(store: Store) -> None:
    store.write(many(20_000))
    before = store.used_bytes()
    bound = before // 2
    deleted = store.prune(max_age=None, max_size=bound, now=T0)
    assert deleted > 0
    assert store.count() == 20_000 - deleted
    assert store.used_bytes() <= bound
    # the oldest went first
    ids = [r for (r,) in store.conn.execute("SELECT id FROM readings ORDER BY id")]
    assert ids == list(range(deleted + 1, 20_001))


def test_prune_by_size_when_already_small(store: Store) -> None:
    store.write(many(10))
    assert store.prune(max_age=None, max_size=store.used_bytes(), now=T0) == 0
    assert store.count() == 10


def test_prune_by_size_below_the_empty_schema_deletes_everything(store: Store) -> None:
    store.write(many(50))
    assert store.prune(max_age=None, max_size=1, now=T0) == 50
    assert store.count() == 0


def test_used_bytes_counts_pages_in_use(store: Store) -> None:
    page_size = pragma(store, "page_size")
    assert isinstance(page_size, int)
    empty = store.used_bytes()
    assert empty % page_size == 0
    store.write(many(5000))
    assert store.used_bytes() > empty


def test_prune_by_size_gives_the_space_back_to_the_file_system(store: Store, db_path: Path) -> None:
    store.write(many(20_000))
    store.prune(max_age=None, max_size=store.used_bytes() // 2, now=T0)
    assert pragma(store, "freelist_count") == 0
    assert db_path.stat().st_size == store.used_bytes()
