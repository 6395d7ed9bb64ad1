"""An optional Prometheus endpoint on a loopback port (the only importer of prometheus_client).

Counts and depths are read from plain callables at scrape time (:class:`Sources`), so they
are never stale and nothing has to push them; latencies are observed as they happen
(:meth:`Metrics.observe_ingest`, :meth:`Metrics.observe_decision`). Every metric lives in a
registry of its own, not prometheus_client's global one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

import psutil
from prometheus_client import CollectorRegistry, Histogram, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.errors import AgentError

log = logging.getLogger(__name__)

NAMESPACE = "edge_agent"
# from a fast commit (a few ms) to a batch waiting behind a slow disk
INGEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# rules take microseconds, the embed engine tens of ms, an llm decision seconds on a Pi
DECISION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def _zero() -> int:
    return 0


def _none() -> float | None:
    return None


def _unknown() -> bool | None:
    return None


def _no_reasons() -> Mapping[str, int]:
    return {}


@dataclass(frozen=True)
class Sources:
    """Where the numbers come from; each is called on every scrape and must be cheap and
    thread-safe (the scrape runs on the server's thread)."""

    readings_total: Callable[[], int] = _zero  # readings held in the database (SPEC 3)
    received_total: Callable[[], int] = _zero  # sensor messages taken in since start
    rejected_by_reason: Callable[[], Mapping[str, int]] = _no_reasons  # since start
    queue_depth: Callable[[], int] = _zero  # messages waiting for the ingest thread
    outbox_depth: Callable[[], int] = _zero  # commands not yet acknowledged by the broker
    tokens_per_second: Callable[[], float | None] = _none  # the model's, None before loading
    model_usable: Callable[[], bool | None] = _unknown  # None while loading or if no model


class _Live(Collector):
    """Reads :class:`Sources` when Prometheus asks."""

    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self.process = psutil.Process()

    def collect(self) -> Iterator[Metric]:
        s = self.sources
        yield _gauge("readings", "Readings held in the local database.", s.readings_total())
        yield _counter("received", "Sensor messages received since start.", s.received_total())
        rejected = CounterMetricFamily(
            f"{NAMESPACE}_rejected", "Sensor messages rejected since start.", labels=["reason"]
        )
        for reason, count in sorted(s.rejected_by_reason().items()):
            rejected.add_metric([reason], count)
        yield rejected
        yield _gauge("queue_depth", "Messages waiting for the ingest thread.", s.queue_depth())
        yield _gauge("outbox_depth", "Commands not yet acknowledged.", s.outbox_depth())
        rate = s.tokens_per_second()
        if rate is not None:
            yield _gauge("model_tokens_per_second", "Model tokens per second since load.", rate)
        usable = s.model_usable()
        if usable is not None:
            yield _gauge("model_usable", "1 if the model runs here, 0 if it could not (policies "
                         "then run on rules).", float(usable))
        memory = self.process.memory_info()
        yield _gauge("resident_memory_bytes", "Resident memory of the agent.", memory.rss)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{NAMESPACE}_{name}", doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{NAMESPACE}_{name}", doc, value=value)


#: health state as a number: 0 ok, 1 suspect, 2 faulty
HEALTH_LEVELS = {"ok": 0, "suspect": 1, "faulty": 2}
Healths = Mapping[tuple[str, str], tuple[str, str | None]]  # (kind, key) -> (state, fault)
HealthSource = Callable[[], tuple[Healths, Mapping[str, str]]]  # and policy -> faulty input


class _Health(Collector):
    """Diagnosis: per series and actuator its health, per policy whether a fault pauses it."""

    def __init__(self, source: HealthSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        health, paused = self.source()
        state = GaugeMetricFamily(f"{NAMESPACE}_health_state", "Health of a sensor series or "
                                  "actuator: 0 ok, 1 suspect, 2 faulty.",
                                  labels=["kind", "key", "fault"])
        for (kind, key), (level, fault) in sorted(health.items()):
            state.add_metric([kind, key, fault or ""], HEALTH_LEVELS.get(level, 0))
        yield state
        pause = GaugeMetricFamily(f"{NAMESPACE}_policy_paused", "1 while a faulty input pauses "
                                  "the policy.", labels=["policy", "input"])
        for policy, key in sorted(paused.items()):
            pause.add_metric([policy, key], 1)
        yield pause


class Metrics:
    """The agent's metrics; ``serve(port)`` exposes them at ``http://127.0.0.1:port/metrics``."""

    def __init__(self, sources: Sources | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.ingest_latency = Histogram(
            f"{NAMESPACE}_ingest_latency_seconds",
            "From a message's arrival to the commit of its reading.",
            buckets=INGEST_BUCKETS,
            registry=self.registry,
        )
        self.decision_latency = Histogram(
            f"{NAMESPACE}_decision_latency_seconds",
            "Time one policy decision took, by policy and engine.",
            ["policy", "engine"],
            buckets=DECISION_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_Live(sources or Sources()))
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def add_health(self, source: HealthSource) -> None:
        self.registry.register(_Health(source))

    def observe_ingest(self, seconds: float) -> None:
        self.ingest_latency.observe(max(0.0, seconds))

    def observe_decision(self, policy: str, engine: str, seconds: float) -> None:
        self.decision_latency.labels(policy, engine).observe(max(0.0, seconds))

    def render(self) -> bytes:
        """The text exposition format, as a scrape would get it."""
        return generate_latest(self.registry)

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve on ``host:port`` in a daemon thread; returns the port (0 picks a free one)."""
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise AgentError(f"cannot serve metrics on {host}:{port}: {exc}") from None
        bound: int = self._server.server_address[1]
        log.info("metrics at http://%s:%d/metrics", host, bound)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
