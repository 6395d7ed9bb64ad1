"""One SQLite file per agent, through sqlite-utils: WAL, batched writes, retention.

Durability: WAL with ``synchronous=FULL`` by default, so a committed batch has been fsynced
before any of its messages is acknowledged to the broker; a power cut loses no acknowledged
reading. ``normal`` trades that for speed (see README).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from agent.errors import StorageError
from agent.pipeline.core import Processed
from agent.storage.migrations import migrate

_INSERT = (
    "INSERT OR IGNORE INTO readings (series_id, ts, recv_ts, sent_ts, seq, raw, "
    "raw_unit, value, clean, outlier) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
PRUNE_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class StoredReading:
    id: int
    device: str
    quantity: str
    unit: str | None
    ts: float
    seq: int | None
    raw: float
    raw_unit: str | None
    value: float
    clean: float
    outlier: bool


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: str
    decision_id: str
    topic: str
    payload: str
    created: float
    expires: float
    state: str = "pending"
    attempts: int = 0


class Store:
    """The agent's database; use from one thread at a time."""

    def __init__(self, path: Path, synchronous: str = "full") -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            new = not path.exists()
            if new:  # readings are private: owner and group only (SQLite copies the mode to
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o640))  # -wal and -shm)
            conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
            if new:
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
            conn.execute("PRAGMA foreign_keys=ON")
            self.db = sqlite_utils.Database(conn)
            migrate(self.db)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open database {path}: {exc}") from None
        self._series: dict[tuple[str, str], int] = {}

    @classmethod
    def reader(cls, path: Path) -> Store:
        """A read-only view of an existing database, for readers beside the agent (the
        dashboard): its own connection, no migrations, never a writer's lock."""
        store = cls.__new__(cls)
        store.path = path
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5,
                                   check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open database {path} to read: {exc}") from None
        store.db = sqlite_utils.Database(conn)
        store._series = {}
        return store

    @property
    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection = self.db.conn
        return conn

    def close(self) -> None:
        self.conn.close()

    def _series_id(self, device: str, quantity: str, unit: str | None) -> int:
        key = (device, quantity)
        sid = self._series.get(key)
        if sid is None:
            self.conn.execute(
                "INSERT OR IGNORE INTO series (device, quantity, unit) VALUES (?, ?, ?)",
                (device, quantity, unit),
            )
            sid = self.conn.execute(
                "SELECT id FROM series WHERE device = ? AND quantity = ?", key
            ).fetchone()[0]
            self._series[key] = sid
        return sid

    def write(self, rows: Sequence[Processed]) -> int:
        """Insert a batch in one transaction; return how many rows were new."""
        try:
            with self.conn:
                params = []
                for p in rows:
                    r = p.reading
                    params.append(
                        (
                            self._series_id(r.device, r.quantity, p.unit),
                            r.ts,
                            r.recv_ts,
                            r.sent_ts,
                            r.seq,
                            r.value,
                            r.unit,
                            p.value,
                            p.clean,
                            int(p.outlier),
                        )
                    )
                return self.conn.executemany(_INSERT, params).rowcount
        except sqlite3.Error as exc:
            self._series.clear()
            raise StorageError(f"cannot write readings to {self.path}: {exc}") from None

    def count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM readings").fetchone()[0])

    def series(self) -> list[tuple[str, str]]:
        return [
            (d, q)
            for d, q in self.conn.execute(
                "SELECT device, quantity FROM series ORDER BY device, quantity"
            )
        ]

    def recent_keys(self, device: str, quantity: str, limit: int) -> list[tuple[int, float | None]]:
        rows = self.conn.execute(
            "SELECT seq, sent_ts FROM readings JOIN series ON series.id = series_id "
            "WHERE device = ? AND quantity = ? AND seq IS NOT NULL ORDER BY readings.id DESC "
            "LIMIT ?",
            (device, quantity, limit),
        ).fetchall()
        return [(seq, sent_ts) for seq, sent_ts in reversed(rows)]

    def points(self, device: str, quantity: str, since: float) -> list[tuple[float, float, float]]:
        """``(ts, value, clean)`` of a series since ``since``, oldest first."""
        return [
            (ts, value, clean)
            for ts, value, clean in self.conn.execute(
                "SELECT ts, value, clean FROM readings JOIN series ON series.id = series_id "
                "WHERE device = ? AND quantity = ? AND ts >= ? ORDER BY ts",
                (device, quantity, since),
            )
        ]

    def points_detail(self, device: str, quantity: str, since: float, limit: int = 5000
                      ) -> list[tuple[float, float, float, bool]]:
        """``(ts, value, clean, outlier)`` of a series since ``since``: the newest ``limit``,
        oldest first."""
        rows = self.conn.execute(
            "SELECT ts, value, clean, outlier FROM readings JOIN series ON series.id = series_id "
            "WHERE device = ? AND quantity = ? AND ts >= ? ORDER BY ts DESC LIMIT ?",
            (device, quantity, since, limit)).fetchall()
        return [(ts, v, c, bool(o)) for ts, v, c, o in reversed(rows)]

    def recent(
        self, limit: int = 20, device: str | None = None, quantity: str | None = None
    ) -> list[StoredReading]:
        where, args = [], []
        if device is not None:
            where.append("device = ?")
            args.append(device)
        if quantity is not None:
            where.append("quantity = ?")
            args.append(quantity)
        sql = (
            "SELECT readings.id, device, quantity, unit, ts, seq, raw, raw_unit, value, "
            "clean, outlier FROM readings JOIN series ON series.id = series_id "
            + (f"WHERE {' AND '.join(where)} " if where else "")
            + "ORDER BY readings.id DESC LIMIT ?"
        )
        rows = self.conn.execute(sql, [*args, limit]).fetchall()
        return [
            StoredReading(
                id=i,
                device=d,
                quantity=q,
                unit=u,
                ts=ts,
                seq=seq,
                raw=raw,
                raw_unit=ru,
                value=v,
                clean=c,
                outlier=bool(o),
            )
            for i, d, q, u, ts, seq, raw, ru, v, c, o in reversed(rows)
        ]

    def used_bytes(self) -> int:
        page_size, pages, free = (
            self.conn.execute(f"PRAGMA {p}").fetchone()[0]
            for p in ("page_size", "page_count", "freelist_count")
        )
        return int(page_size * (pages - free))

    def _delete_chunks(self, where: str, args: tuple[float, ...]) -> Iterator[int]:
        while True:
            with self.conn:
                n = self.conn.execute(
                    f"DELETE FROM readings WHERE id IN (SELECT id FROM readings WHERE {where} "
                    f"ORDER BY id LIMIT {PRUNE_CHUNK})",
                    args,
                ).rowcount
            yield n
            if n < PRUNE_CHUNK:
                return

    def prune(self, max_age: float | None, max_size: int | None, now: float | None = None) -> int:
        """Delete readings older than ``max_age`` and the oldest until under ``max_size``."""
        now = time.time() if now is None else now
        deleted = 0
        try:
            if max_age is not None:
                deleted += sum(self._delete_chunks("ts < ?", (now - max_age,)))
            while max_size is not None and self.used_bytes() > max_size:
                lowest = self.conn.execute("SELECT min(id), max(id) FROM readings").fetchone()
                if lowest[0] is None:
                    break
                cut = lowest[0] + max(1, (lowest[1] - lowest[0]) // 10)
                deleted += sum(self._delete_chunks("id < ?", (cut,)))
            if deleted:
                # executescript runs the pragma to completion; execute frees one page only
                self.conn.executescript("PRAGMA incremental_vacuum;")
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise StorageError(f"retention failed on {self.path}: {exc}") from None
        return deleted

    # -- commands, audit and labelled examples (the decision side) -----------------------------

    def outbox_add(self, row: OutboxRow) -> bool:
        """Record a command before it is published; False if its decision already has one."""
        try:
            with self.conn:
                cur = self.conn.execute(
                    "INSERT OR IGNORE INTO outbox (id, decision_id, topic, payload, created, "
                    "expires, state) VALUES (?, ?, ?, ?, ?, ?, 'pending')",
                    (row.id, row.decision_id, row.topic, row.payload, row.created, row.expires))
                return cur.rowcount == 1
        except sqlite3.Error as exc:
            raise StorageError(f"cannot write the outbox in {self.path}: {exc}") from None

    def outbox_mark(self, command_id: str, state: str, now: float) -> None:
        with self.conn:
            self.conn.execute(
                "UPDATE outbox SET state = ?, delivered_at = CASE WHEN ? = 'delivered' THEN ? "
                "ELSE delivered_at END WHERE id = ?", (state, state, now, command_id))

    def outbox_attempt(self, command_id: str) -> None:
        with self.conn:
            self.conn.execute("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?",
                              (command_id,))

    def outbox_pending(self) -> list[OutboxRow]:
        """Commands recorded but not yet acknowledged by the broker, oldest first."""
        return [OutboxRow(*row) for row in self.conn.execute(
            "SELECT id, decision_id, topic, payload, created, expires, state, attempts "
            "FROM outbox WHERE state = 'pending' ORDER BY created, rowid")]

    def outbox_depth(self) -> int:
        return int(self.conn.execute(
            "SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()[0])

    def outbox_since(self, since: float) -> list[OutboxRow]:
        """Commands made since ``since`` that were or may yet be delivered, oldest first."""
        return [OutboxRow(*row) for row in self.conn.execute(
            "SELECT id, decision_id, topic, payload, created, expires, state, attempts "
            "FROM outbox WHERE created >= ? AND state != 'expired' ORDER BY created, rowid",
            (since,))]

    def outbox_rows(self, limit: int = 50) -> list[OutboxRow]:
        rows = self.conn.execute(
            "SELECT id, decision_id, topic, payload, created, expires, state, attempts "
            "FROM outbox ORDER BY created DESC, rowid DESC LIMIT ?", (limit,)).fetchall()
        return [OutboxRow(*row) for row in reversed(rows)]

    def outbox_by_ids(self, ids: Sequence[str]) -> list[OutboxRow]:
        marks = ", ".join("?" for _ in ids)
        return [OutboxRow(*row) for row in self.conn.execute(
            "SELECT id, decision_id, topic, payload, created, expires, state, attempts "
            f"FROM outbox WHERE id IN ({marks})", tuple(ids))] if ids else []

    def audit_add(self, row: dict[str, object]) -> None:
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        try:
            with self.conn:
                self.conn.execute(f"INSERT OR REPLACE INTO audit ({columns}) VALUES ({marks})",
                                  tuple(row.values()))
        except sqlite3.Error as exc:
            raise StorageError(f"cannot write the audit table in {self.path}: {exc}") from None

    def audit_recent(self, limit: int = 20, policy: str | None = None
                     ) -> list[dict[str, object]]:
        sql = "SELECT * FROM audit " + ("WHERE policy = ? " if policy else "") + \
            "ORDER BY id DESC LIMIT ?"
        args: tuple[object, ...] = (policy, limit) if policy else (limit,)
        cur = self.conn.execute(sql, args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in reversed(cur.fetchall())]

    def audit_query(self, limit: int = 100, **equal: str) -> list[dict[str, object]]:
        """The newest ``limit`` audit rows, newest first, whose columns equal ``equal``
        (policy, action, verdict, engine, source)."""
        allowed = {"policy", "action", "verdict", "engine", "source"}
        where = [f"{k} = ?" for k in equal if k in allowed]
        args = [v for k, v in equal.items() if k in allowed]
        cur = self.conn.execute(
            "SELECT * FROM audit " + (f"WHERE {' AND '.join(where)} " if where else "")
            + "ORDER BY id DESC LIMIT ?", (*args, limit))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def example_add(self, ts: float, policy: str, digest: str, action: str, origin: str) -> None:
        with self.conn:
            self.conn.execute("INSERT INTO examples (ts, policy, digest, action, origin) "
                              "VALUES (?, ?, ?, ?, ?)", (ts, policy, digest, action, origin))

    def examples(self, policy: str) -> list[tuple[str, str]]:
        return [(d, a) for d, a in self.conn.execute(
            "SELECT digest, action FROM examples WHERE policy = ? ORDER BY id", (policy,))]

    # -- people's answers on faults (the diagnose heads' labels) --------------------------------

    def diagnosis_label_add(self, ts: float, device: str, quantity: str, verdict: str,
                            fault: str | None, label: str, digest: str, origin: str) -> None:
        try:
            with self.conn:
                self.conn.execute(
                    "INSERT INTO diagnosis_labels (ts, device, quantity, verdict, fault, label, "
                    "digest, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (ts, device, quantity, verdict, fault, label, digest, origin))
        except sqlite3.Error as exc:
            raise StorageError(f"cannot store a diagnosis label in {self.path}: {exc}") from None

    def diagnosis_labels(self) -> list[tuple[str, str, str]]:
        """(quantity, digest, label) of people's answers that carry a digest, oldest first."""
        return [(q, d, lb) for q, d, lb in self.conn.execute(
            "SELECT quantity, digest, label FROM diagnosis_labels WHERE digest != '' "
            "ORDER BY id")]
