"""Schema migrations, registered in order with :func:`migration`; each runs in a transaction."""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlite_utils

Migration = Callable[[sqlite_utils.Database], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(name: str) -> Callable[[Migration], Migration]:
    def register(fn: Migration) -> Migration:
        MIGRATIONS.append((name, fn))
        return fn

    return register


# Plain SQL through db.execute: sqlite-utils' table helpers commit on their own, which would
# split a migration across transactions.
@migration("0001_readings")
def _readings(db: sqlite_utils.Database) -> None:
    db.execute("""CREATE TABLE series (
        id INTEGER PRIMARY KEY, device TEXT NOT NULL, quantity TEXT NOT NULL, unit TEXT,
        UNIQUE (device, quantity))""")
    db.execute("""CREATE TABLE readings (
        id INTEGER PRIMARY KEY,
        series_id INTEGER NOT NULL REFERENCES series(id),
        ts REAL NOT NULL,         -- the reading's time: its own ts, or the receive time
        recv_ts REAL NOT NULL,    -- when the agent received it
        sent_ts REAL,             -- the ts the device sent, if any
        seq INTEGER,              -- the device's sequence number, if any
        raw REAL NOT NULL,        -- the value as sent
        raw_unit TEXT,            -- the unit as sent
        value REAL NOT NULL,      -- converted to the canonical unit
        clean REAL NOT NULL,      -- after outlier removal and smoothing
        outlier INTEGER NOT NULL  -- 1 when the Hampel filter replaced the value
    )""")
    db.execute("CREATE INDEX readings_series_ts ON readings (series_id, ts)")
    db.execute("CREATE INDEX readings_ts ON readings (ts)")
    # A redelivered reading carries the same seq (and ts, if it has one): stored once.
    db.execute(
        "CREATE UNIQUE INDEX readings_dedup ON readings "
        "(series_id, seq, coalesce(sent_ts, -1)) WHERE seq IS NOT NULL"
    )


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply the migrations not yet recorded; return the names applied."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    db.conn.commit()
    done = {name for (name,) in db.execute("SELECT name FROM _migrations").fetchall()}
    applied = []
    for name, fn in MIGRATIONS:
        if name in done:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            fn(db)
            db.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (name, time.time())
            )
        except BaseException:
            db.conn.rollback()
            raise
        db.conn.commit()
        applied.append(name)
    return applied


@migration("0002_decisions")
def _decisions(db: sqlite_utils.Database) -> None:
    db.execute("""CREATE TABLE outbox (
        id TEXT PRIMARY KEY,           -- the command id (SPEC 4)
        decision_id TEXT NOT NULL UNIQUE,  -- one command per decision, whatever happens
        topic TEXT NOT NULL,
        payload TEXT NOT NULL,         -- the signed command exactly as published
        created REAL NOT NULL,
        expires REAL NOT NULL,
        state TEXT NOT NULL,           -- pending, delivered or expired
        attempts INTEGER NOT NULL DEFAULT 0,
        delivered_at REAL
    )""")
    db.execute("CREATE INDEX outbox_state ON outbox (state, created)")
    db.execute("""CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        decision_id TEXT NOT NULL UNIQUE,
        ts REAL NOT NULL,
        policy TEXT NOT NULL,
        engine TEXT NOT NULL,          -- the engine that decided (after the fitness gate)
        digest TEXT NOT NULL,          -- the input digest the model saw
        model_sha256 TEXT,
        prompt_hash TEXT,
        raw_output TEXT,               -- what the model produced, unparsed
        scores TEXT NOT NULL,          -- JSON: probabilities over the allowed actions
        action TEXT NOT NULL,
        value REAL,
        verdict TEXT NOT NULL,         -- "ok" or the safety layer's reason for refusing
        command_id TEXT,
        source TEXT NOT NULL DEFAULT 'policy'
    )""")
    db.execute("CREATE INDEX audit_ts ON audit (ts)")
    db.execute("""CREATE TABLE examples (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        policy TEXT NOT NULL,
        digest TEXT NOT NULL,
        action TEXT NOT NULL,
        origin TEXT NOT NULL           -- override (a person changed the actuator), ...
    )""")


@migration("0003_diagnosis_labels")
def _diagnosis_labels(db: sqlite_utils.Database) -> None:
    db.execute("""CREATE TABLE diagnosis_labels (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        device TEXT NOT NULL,
        quantity TEXT NOT NULL,
        verdict TEXT NOT NULL,         -- confirmed or dismissed
        fault TEXT,                    -- the fault the agent reported then, if any
        label TEXT NOT NULL,           -- what the head learns: the fault, or ok
        digest TEXT NOT NULL,          -- the series' digest when the person answered
        origin TEXT NOT NULL           -- intent or cli, and who asked
    )""")
    db.execute("CREATE INDEX diagnosis_labels_quantity ON diagnosis_labels (quantity)")
