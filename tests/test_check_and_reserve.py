"""Attack 5 of issue 12: the safety check and the record of what was sent must be one step.

Group decisions, band crossings, schedules, interlocks and intents run on several threads. Here
many threads, released together by a barrier, ask the real agent (real broker, real SQLite
outbox, real signatures) for commands that are each fine alone but together break an interlock
(`never_together`) or `min_interval`: exactly one may leave the agent."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from agent.broker import Mosquitto
from agent.config import load_config, read_yaml
from agent.peers.aggregate import GroupDecision
from agent.policy.safety import Proposal, SafetyLayer
from agent.service.runtime import Agent
from tests.conftest import Collector, agent_config, wait_for

HVAC = "edge/actuators/livingroom-hvac/hvac/set"
FAN = "edge/actuators/livingroom-fan/fan/set"
MARK = "edge/test/marker"
THREADS = 16
FAN_POLICY = {
    "name": "fan",
    "every": "1h",
    "inputs": ["livingroom-1/humidity"],
    "engine": "rules",
    "actuators": [{"device": "livingroom-fan", "actuator": "fan", "actions": ["on", "off"]}],
}


def config_file(tmp_path: Path, port: int) -> Path:
    path = agent_config(tmp_path, port, policies=True, policy__every="1h")
    data = read_yaml(path.read_text())
    data["policies"][0].pop("peers", None)
    data["policies"].append(FAN_POLICY)
    data["model"]["path"] = str(tmp_path / "no-model.gguf")  # rules only: no model to load
    # the example's interlock: never_together [livingroom-hvac/hvac=heat, livingroom-fan/fan=on]
    assert data["interlocks"][0]["never_together"][1] == "livingroom-fan/fan=on"
    path.write_text(yaml.safe_dump(data))
    return path


def test_reserve_records_what_it_allows_and_check_only_looks(tmp_path: Path) -> None:
    safety = SafetyLayer(load_config(config_file(tmp_path, 1883)))
    heat = Proposal("climate", "livingroom-hvac", "hvac", "heat", 21.0)
    fan = Proposal("fan", "livingroom-fan", "fan", "on", None)
    assert safety.check(heat, 0.0, no_readings).allowed
    assert safety.check(fan, 0.0, no_readings).allowed  # a look reserves nothing
    assert safety.reserve(heat, 0.0, no_readings).allowed
    assert safety.reserve(fan, 0.0, no_readings).kind == "never_together"
    assert safety.reserve(heat, 1.0, no_readings).kind == "min_interval"


def no_readings(device: str, quantity: str) -> float | None:
    return None


@pytest.fixture
def agent(tmp_path: Path, broker: Mosquitto) -> Iterator[Agent]:
    running = Agent(load_config(config_file(tmp_path, broker.port)))
    running.start()
    assert running.mqtt.wait_connected(20)
    yield running
    running.stop()


def decision(policy: str, action: str, value: float | None, window: int) -> GroupDecision:
    return GroupDecision(policy, 0.0, action, value, {action: 1.0}, ("test-agent",), "vote", 1,
                         group="g", window=window)


def together(calls: list[Callable[[], None]]) -> None:
    barrier = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call: Callable[[], None]) -> None:
        barrier.wait()
        try:
            call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


def on_the_wire(agent: Agent, watch: Collector) -> list[tuple[str, bytes, bool]]:
    """Every command published so far, once the broker has passed them all on: a marker
    published after them arrives after them."""
    agent.mqtt.publish(MARK, b"{}", qos=1)
    wait_for(lambda: len(watch.on(MARK)) == 1, what="the marker")
    return [m for m in watch.messages if m[0] in (HVAC, FAN)]


def outbox_rows(agent: Agent) -> int:
    rows = agent.ingestor.call(lambda: agent.store.outbox_since(0)).result(timeout=30)
    return len(rows)


@pytest.mark.broker
def test_concurrent_proposals_that_break_never_together_send_one_command(
    agent: Agent, collector_factory: Callable[..., Collector], broker: Mosquitto
) -> None:
    watch = collector_factory(broker.port, HVAC, FAN, MARK)
    decisions = agent.decisions
    assert decisions is not None
    calls: list[Callable[[], None]] = []
    for i in range(THREADS):
        d = decision("climate", "heat", 21.0, i) if i % 2 else decision("fan", "on", None, i)
        calls.append(lambda d=d: decisions.act_group(d))  # type: ignore[misc]
    together(calls)
    assert outbox_rows(agent) == 1
    sent = on_the_wire(agent, watch)
    assert len(sent) == 1, [m[0] for m in sent]


@pytest.mark.broker
def test_concurrent_proposals_inside_min_interval_send_one_command(
    agent: Agent, collector_factory: Callable[..., Collector], broker: Mosquitto
) -> None:
    watch = collector_factory(broker.port, HVAC, FAN, MARK)
    decisions = agent.decisions
    assert decisions is not None
    calls: list[Callable[[], None]] = [
        lambda i=i: decisions.act_group(decision("climate", "cool", 20.0 + i / 10, i))  # type: ignore[misc]
        for i in range(THREADS)
    ]
    together(calls)
    assert outbox_rows(agent) == 1
    assert len(on_the_wire(agent, watch)) == 1
