"""What each page shows, as JSON-ready dicts: the agent's in-memory state through the status
interfaces (:func:`agent.service.status.status_payload`, the ingest counters, the health
service) and the database through a read-only :class:`~agent.storage.Store` of its own."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from agent.pipeline.core import Pipeline
from agent.service.status import status_payload
from agent.storage import Store

if TYPE_CHECKING:
    from agent.service.runtime import Agent

T = TypeVar("T")
MAX_WINDOW = 7 * 86400.0
MAX_ROWS = 500
MAX_POINTS = 3000  # the newest points of a chart: more than a screen's width of pixels
FRESH = 1.0  # seconds an answer is served again to every open page: N pages cost as one


class Views:
    """The dashboard's reads. Thread-safe: one lock around the read-only connection."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self._store: Store | None = None
        self._lock = threading.Lock()
        self._rate: tuple[float, int, float] = (time.monotonic(), agent.ingestor.rows_total, 0.0)
        self._cache: dict[tuple[Any, ...], tuple[float, Any]] = {}
        self._cache_lock = threading.Lock()

    def cached(self, key: tuple[Any, ...], make: Callable[[], T]) -> T:
        """``make()``, or its answer from less than ``FRESH`` seconds ago."""
        now = time.monotonic()
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < FRESH:
                return cast(T, hit[1])
        value = make()
        with self._cache_lock:
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[key] = (now, value)
        return value

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def _db(self) -> Store:
        if self._store is None:
            self._store = Store.reader(self.agent.config.db_path)
        return self._store

    # -- overview -------------------------------------------------------------------------------

    def readings_per_second(self) -> float:
        """Stored readings a second, over the time since the last call (at least 1 s)."""
        now, total = time.monotonic(), self.agent.ingestor.rows_total
        then, before, rate = self._rate
        if now - then >= 1.0:
            rate = max(0.0, (total - before) / (now - then))
            self._rate = (now, total, rate)
        return round(rate, 2)

    def overview(self) -> dict[str, Any]:
        agent = self.agent
        status = status_payload(agent, "offline" if agent.stopping else "online")
        mqtt = agent.mqtt
        status.update(
            agent=agent.id,
            broker={"address": f"{agent.config.mqtt.host}:{agent.config.mqtt.port}",
                    "connected": mqtt.connected, "last_error": mqtt.last_error},
            readings_per_s=self.readings_per_second(),
            rejected_by_reason=dict(agent.ingestor.counters.rejected_by_reason),
            leaders=self.leaders(),
            audit_last=self.audit_last(),
        )
        return status

    def leaders(self) -> dict[str, str | None]:
        """The leader of each peer group, as the peer service sees it."""
        peers = self.agent.peers
        with peers.lock:
            return {group: peers.membership.leader(group) for group in peers.groups}

    def audit_last(self) -> int:
        with self._lock:
            row = self._db().conn.execute("SELECT max(id) FROM audit").fetchone()
        return int(row[0] or 0)

    # -- series ---------------------------------------------------------------------------------

    def series_list(self) -> list[dict[str, Any]]:
        with self._lock:
            pairs = self._db().series()
        targets = self._targets()
        return [{"device": d, "quantity": q, "band": targets.get(f"{d}/{q}")} for d, q in pairs]

    def _targets(self) -> dict[str, list[float]]:
        return {k: list(v) for p in self.agent.config.policies for k, v in p.targets.items()}

    def series(self, device: str, quantity: str, window: float) -> dict[str, Any]:
        window = min(max(window, 10.0), MAX_WINDOW)
        now = time.time()
        key = f"{device}/{quantity}"
        with self._lock:
            db = self._db()
            points = db.points_detail(device, quantity, now - window, MAX_POINTS)
            commands = db.outbox_since(now - window)
            since = now - max(self.agent.config.features.windows, default=0.0)
            recent = ([(ts, v, c) for ts, v, c, _ in points if ts >= since]
                      if len(points) < MAX_POINTS else db.points(device, quantity, since))
        policies = {p.name for p in self.agent.config.policies if key in p.inputs}
        marks = []
        for row in commands:
            cmd = json.loads(row.payload)
            if cmd.get("policy") in policies:
                marks.append({"ts": row.created, "action": cmd.get("action"),
                              "value": cmd.get("value"), "id": row.id, "state": row.state})
        return {
            "device": device, "quantity": quantity, "window": window,
            "band": self._targets().get(key),
            "points": [list(p) for p in points],
            "commands": marks,
            "features": self.features(device, quantity, recent, now),
        }

    def features(self, device: str, quantity: str, points: list[tuple[float, float, float]],
                 now: float) -> list[dict[str, Any]]:
        """The features per configured window, as ``edge-agent features`` computes them."""
        pipeline = Pipeline(self.agent.config)
        pipeline.restore(device, quantity, points)
        out = []
        for w in sorted(self.agent.config.features.windows):
            f = pipeline.features(device, quantity, w, now)
            if f is not None:
                out.append(dataclasses.asdict(f))
        return out

    # -- decisions ------------------------------------------------------------------------------

    def decisions(self, limit: int = 100, **equal: str) -> list[dict[str, Any]]:
        equal = {k: v for k, v in equal.items() if v}
        with self._lock:
            rows = self._db().audit_query(min(max(limit, 1), MAX_ROWS), **equal)
            ids = [str(r["command_id"]) for r in rows if r["command_id"]]
            commands = {r.id: r for r in self._db().outbox_by_ids(ids)}
        for row in rows:
            row["scores"] = json.loads(str(row["scores"]))
            cmd = commands.get(str(row["command_id"])) if row["command_id"] else None
            row["command"] = None if cmd is None else {**json.loads(cmd.payload),
                                                       "delivery": cmd.state}
        return rows

    # -- health, peers and learning -------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        service = self.agent.health
        with service.lock:
            items = [{"kind": kind, "key": key, **t.health.message()}
                     for (kind, key), t in service.diagnoser.trackers.items()]
            paused = dict(service.paused)
        items.sort(key=lambda h: ({"faulty": 0, "suspect": 1}.get(str(h["state"]), 2), h["key"]))
        return {"enabled": self.agent.config.diagnosis.enabled, "items": items,
                "paused": paused, "labels": self.agent.health.enabled}

    def peers(self) -> dict[str, Any]:
        status = status_payload(self.agent, "online")
        with self._lock:
            groups = self._db().audit_query(50, source="group")
        for row in groups:
            row["scores"] = json.loads(str(row["scores"]))
        return {
            "groups": status.get("groups", []),
            "peers": status.get("peers", {}),
            "leaders": self.leaders(),
            "federation": status.get("federation", {}),
            "policies": status.get("policies", {}),
            "group_decisions": groups,
        }


def apply_label(agent: Agent, kind: str, key: str, label: str) -> dict[str, Any]:
    """A person's confirm or dismiss of a series' fault (``HealthService.label``): the reply
    the intents topic would give, ``ok`` false with the reason when it cannot be taken."""
    return agent.health.label(kind, key, label)
