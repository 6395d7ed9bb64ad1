"""The fitness gate on a running agent: an engine that scores below `min_accuracy` on its
self-test never decides; the policy runs on rules and says why. The bundled model's `llm`
engine is near chance on these cases (README, bench decide), so it is the real failing case;
the same engine with the bar at zero passes and decides."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.broker import Mosquitto
from tests.conftest import AgentProcess, Collector, agent_config, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.slow]
STATUS = "edge/agents/test-agent/status"


def gated(watch: Collector) -> dict[str, Any] | None:
    for status in reversed(watch.on(STATUS)):
        climate = status.get("policies", {}).get("climate", {})
        if climate.get("state") in ("passed", "failed"):
            return climate  # type: ignore[no-any-return]
    return None


@pytest.mark.parametrize(("bar", "engine"), [(0.9, "rules"), (0.0, "llm")])
def test_the_gate_decides_which_engine_runs(
        bar: float, engine: str, tmp_path: Path, broker: Mosquitto,
        agent_factory: Callable[[Path], AgentProcess],
        collector_factory: Callable[..., Collector]) -> None:
    watch = collector_factory(broker.port, STATUS)
    agent = agent_factory(agent_config(tmp_path, broker.port, policies=True,
                                       policy__engine="llm", policy__min_accuracy=bar))
    wait_for(lambda: gated(watch) is not None, timeout=600, what="the fitness gate's verdict")
    verdict = gated(watch)
    assert verdict is not None
    assert verdict["requested"] == "llm" and verdict["engine"] == engine
    assert verdict["cases"] == 60 and verdict["min_accuracy"] == bar
    if engine == "rules":
        assert verdict["state"] == "failed" and verdict["accuracy"] < bar
        assert "running on rules" in agent.log()
    else:
        assert verdict["state"] == "passed"
