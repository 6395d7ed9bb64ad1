"""The agent's figures for Prometheus: where each metric reads its value, and serving them on
``metrics.port``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from agent.service.metrics import Metrics, Sources

if TYPE_CHECKING:
    from agent.service.runtime import Agent

log = logging.getLogger(__name__)


def serve_metrics(agent: Agent) -> Metrics:
    """Start serving ``agent``'s metrics (``metrics.port`` must be set)."""

    def tokens_per_second() -> float | None:
        worker = agent.worker
        if worker is None or not worker.ready.is_set():
            return None
        return worker.model.stats.tokens_per_second()

    metrics = Metrics(
        Sources(
            readings_total=lambda: agent.ingestor.rows_total,
            received_total=lambda: agent.ingestor.counters.received,
            rejected_by_reason=lambda: dict(agent.ingestor.counters.rejected_by_reason),
            queue_depth=agent.ingestor.depth,
            outbox_depth=lambda: 0 if agent.outbox is None else agent.outbox.depth,
            tokens_per_second=tokens_per_second,
            model_usable=lambda: None
            if agent.model_state["state"] in ("none", "loading")
            else agent.model_state["state"] == "ready",
        )
    )
    metrics.add_health(agent.health.gauges)
    config = agent.config.metrics
    assert config.port is not None
    port = metrics.serve(config.port, config.host)
    log.info("metrics on http://%s:%d/metrics", config.host, port)
    return metrics
