"""The Prometheus endpoint, scraped over HTTP on 127.0.0.1."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.errors import AgentError
from agent.service.metrics import Metrics, Sources


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``{sample name: {sorted labels: value}}`` from a real HTTP scrape."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


class Live:
    """Stand-ins for the agent's counters, changed between scrapes."""

    def __init__(self) -> None:
        self.readings = 120
        self.rejected = {"malformed": 2, "out-of-range": 1}
        self.queue = 4
        self.outbox = 1
        self.rate: float | None = None

    def sources(self) -> Sources:
        return Sources(
            readings_total=lambda: self.readings,
            received_total=lambda: self.readings + sum(self.rejected.values()),
            rejected_by_reason=lambda: self.rejected,
            queue_depth=lambda: self.queue,
            outbox_depth=lambda: self.outbox,
            tokens_per_second=lambda: self.rate,
        )


@pytest.fixture
def served() -> Iterator[tuple[Metrics, Live, int]]:
    live = Live()
    metrics = Metrics(live.sources())
    port = metrics.serve(0)
    yield metrics, live, port
    metrics.close()


def test_counts_and_depths_are_read_at_scrape_time(served: tuple[Metrics, Live, int]) -> None:
    _, live, port = served
    m = scrape(port)
    assert m["edge_agent_readings"] == {(): 120}
    assert m["edge_agent_received_total"] == {(): 123}
    assert m["edge_agent_rejected_total"] == {
        (("reason", "malformed"),): 2,
        (("reason", "out-of-range"),): 1,
    }
    assert m["edge_agent_queue_depth"] == {(): 4}
    assert m["edge_agent_outbox_depth"] == {(): 1}
    assert "edge_agent_model_tokens_per_second" not in m  # no model loaded yet
    assert m["edge_agent_resident_memory_bytes"][()] > 10_000_000

    live.readings, live.queue, live.rate = 125, 0, 182.5
    live.rejected["encoding"] = 1
    m = scrape(port)
    assert m["edge_agent_readings"] == {(): 125}
    assert m["edge_agent_queue_depth"] == {(): 0}
    assert m["edge_agent_rejected_total"][(("reason", "encoding"),)] == 1
    assert m["edge_agent_model_tokens_per_second"] == {(): 182.5}


def test_latency_histograms(served: tuple[Metrics, Live, int]) -> None:
    metrics, _, port = served
    for seconds in (0.002, 0.004, 0.3):
        metrics.observe_ingest(seconds)
    metrics.observe_decision("climate", "embed", 0.04)
    metrics.observe_decision("climate", "rules", 0.0002)
    m = scrape(port)
    ingest = m["edge_agent_ingest_latency_seconds_bucket"]
    assert ingest[(("le", "0.0025"),)] == 1
    assert ingest[(("le", "0.005"),)] == 2
    assert ingest[(("le", "+Inf"),)] == 3
    assert m["edge_agent_ingest_latency_seconds_count"] == {(): 3}
    assert m["edge_agent_ingest_latency_seconds_sum"][()] == pytest.approx(0.306)
    decisions = m["edge_agent_decision_latency_seconds_count"]
    assert decisions == {
        (("engine", "embed"), ("policy", "climate")): 1,
        (("engine", "rules"), ("policy", "climate")): 1,
    }


def test_it_listens_on_loopback_only(served: tuple[Metrics, Live, int]) -> None:
    metrics, _, _ = served
    assert metrics._server is not None
    assert metrics._server.server_address[0] == "127.0.0.1"


def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(AgentError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            Metrics().serve(port)


def test_render_without_a_server() -> None:
    text = Metrics().render().decode()
    assert "edge_agent_readings 0.0" in text
    assert "# TYPE edge_agent_ingest_latency_seconds histogram" in text
