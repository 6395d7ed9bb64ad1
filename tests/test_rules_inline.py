"""A band crossing under the rules engine is decided on the thread that committed the reading:
the command needs no other thread to wake (issue 17, reading -> command p99 <= 20 ms)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.broker import Mosquitto
from agent.config import load_config
from agent.errors import NeedsModel
from agent.policy.signing import load_key, verify
from agent.service.runtime import Agent
from tests.conftest import Collector, agent_config, wait_for

pytestmark = pytest.mark.broker

TEMPERATURE = "edge/sensors/livingroom-1/temperature"
SET = "edge/actuators/livingroom-hvac/hvac/set"


@pytest.fixture
def agent(tmp_path: Path, broker: Mosquitto) -> Iterator[Agent]:
    path = agent_config(tmp_path, broker.port, policies=True, policy__every="1h",
                        policy__engine="rules", policy__peers=None,
                        model__path=str(tmp_path / "no-model.gguf"))  # rules only: no model
    running = Agent(load_config(path))
    running.start()
    assert running.mqtt.wait_connected(20)
    yield running
    running.stop()


def test_a_rules_crossing_needs_neither_the_scheduler_nor_another_thread(
    agent: Agent, broker: Mosquitto, tmp_path: Path,
    collector_factory: Callable[..., Collector],
) -> None:
    watch = collector_factory(broker.port, SET)
    pub = collector_factory(broker.port)
    agent.scheduler.pause()  # before: a crossing was a scheduler job, so nothing would be sent
    threads: list[str] = []
    decide_run = agent.decisions.run if agent.decisions is not None else None
    assert decide_run is not None

    def spy(name: str, trigger: str = "schedule", **kw: bool) -> object:
        threads.append(threading.current_thread().name)
        return decide_run(name, trigger, **kw)

    agent.decisions.run = spy  # type: ignore[union-attr,method-assign]
    seq = int(time.time())
    pub.publish(TEMPERATURE, json.dumps({"value": 22.0, "seq": seq}))  # in band: the zone known
    wait_for(lambda: agent.ingestor.rows_total >= 1, 10, "the in-band reading stored")
    for i in range(1, 4):  # crosses, then stays above: one decision per batch at most
        pub.publish(TEMPERATURE, json.dumps({"value": 27.5, "seq": seq + i}))
    wait_for(lambda: bool(watch.on(SET)), 10, "the command, with the scheduler paused")
    command = watch.on(SET)[0]
    assert command["action"] == "cool" and verify(command, load_key(tmp_path / "command.key"))
    assert threads and set(threads) == {agent.mqtt._thread.name}


def test_rules_only_never_calls_the_model_engine_that_took_over_meanwhile(
    agent: Agent, broker: Mosquitto, collector_factory: Callable[..., Collector],
) -> None:
    """The network thread looks at the engine before it decides; if the gate lets the model's
    engine take over in between, the decision must not wait for the model on that thread."""
    pub = collector_factory(broker.port)
    pub.publish(TEMPERATURE, json.dumps({"value": 27.5, "seq": int(time.time())}))
    wait_for(lambda: agent.ingestor.rows_total >= 1, 10, "a reading stored")
    decisions = agent.decisions
    assert decisions is not None
    st = decisions.states["climate"]
    asked: list[object] = []

    class TookOver:  # stands for the embed engine, which would call the model
        name = "embed"

        def decide(self, situation: object) -> object:
            asked.append(situation)
            raise AssertionError("the model was called on the network thread")

    st.engine = TookOver()  # type: ignore[assignment]
    with pytest.raises(NeedsModel):
        decisions.run("climate", "crossing", rules_only=True)
    assert not asked
