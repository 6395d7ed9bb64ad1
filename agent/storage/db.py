"""One SQLite file per agent, through sqlite-utils: WAL, batched writes, retention.

Durability: WAL with ``synchronous=FULL`` by default, so a committed batch has been fsynced
before any of its messages is acknowledged to the broker; a power cut loses no acknowledged
reading. ``normal`` trades that for speed (see README).
"""

from __future__ import annotations

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


class Store:
    """The agent's database; use from one thread at a time."""

    def __init__(self, path: Path, synchronous: str = "full") -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            new = not path.exists()
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
