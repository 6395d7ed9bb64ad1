"""``edge-agent bench ingest``: a bare paho subscriber against the agent's full ingest path.

Both consumers drain the same kind of backlog: N QoS 1 readings queued by a private Mosquitto
for a persistent session while the consumer was offline. The clock runs from the moment the
consumer connects until the last reading is counted (baseline) or committed and acknowledged
(agent), so the publisher never competes with the consumer being measured. Rounds alternate
baseline and agent in one process; the best of each is compared.
"""

from __future__ import annotations

import os
import resource
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import psutil
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.broker import Mosquitto
from agent.config import Config, parse_config
from agent.errors import AgentError
from agent.service.runtime import Agent
from firmware_sim.load import run_load

RECEIVE_MAXIMUM = 200
TARGET = 0.9  # agent/baseline readings per second (issue 17)
CPU_TARGET = 1.2  # agent/baseline CPU seconds per reading
EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "agent.example.yaml"


@dataclass(frozen=True, slots=True)
class Run:
    seconds: float
    received: int
    persisted: int
    cpu: float = 0.0  # CPU seconds of this process (every thread) while it drained

    @property
    def rate(self) -> float:
        return self.received / self.seconds

    @property
    def cpu_per_1000(self) -> float:
        return 1000 * self.cpu / max(1, self.received)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _props() -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = RECEIVE_MAXIMUM
    return props


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AgentError(f"timed out waiting for {what}")
        time.sleep(0.002)


def _backlog(broker: Mosquitto, count: int, devices: int) -> None:
    result = run_load(broker.host, broker.port, devices=devices, rate=0, duration=None, count=count)
    if result.acknowledged != count:
        raise AgentError(f"the broker acknowledged {result.acknowledged} of {count} readings")


def baseline(broker: Mosquitto, count: int, devices: int, name: str) -> Run:
    """A bare paho subscriber at QoS 1 that only counts (auto-acknowledging)."""
    received = 0
    subscribed = threading.Event()

    def on_message(client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        nonlocal received
        received += 1

    def on_connect(client: paho.Client, *args: Any) -> None:
        client.subscribe("edge/sensors/#", qos=1)

    def make() -> paho.Client:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=paho.MQTTv5)
        c.on_message = on_message
        c.on_connect = on_connect
        c.on_subscribe = lambda *a: subscribed.set()
        return c

    first = make()
    first.connect(broker.host, broker.port, clean_start=True, properties=_props())
    first.loop_start()
    _wait(subscribed.is_set, 10, "the baseline subscription")
    first.disconnect()
    first.loop_stop()
    _backlog(broker, count, devices)
    client = make()
    start, cpu = time.perf_counter(), cpu_seconds()
    client.connect(broker.host, broker.port, clean_start=False, properties=_props())
    client.loop_start()
    _wait(lambda: received >= count, 600, "the baseline to receive every reading")
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    client.disconnect()
    client.loop_stop()
    return Run(seconds, received, 0, cpu)


def bench_config(broker: Mosquitto, data_dir: Path, name: str) -> Config:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["agent"].update(id=name, data_dir=str(data_dir), log_level="WARNING")
    data["mqtt"].update(port=broker.port, receive_maximum=RECEIVE_MAXIMUM)
    data["sensors"]["temperature"].pop("deadband", None)  # every reading becomes a row
    data["policies"] = []
    data["interlocks"] = []
    data["security"]["command_key_file"] = None  # ingest only: no commands, no model updates
    return parse_config(yaml.safe_dump(data))


def agent_run(broker: Mosquitto, count: int, devices: int, name: str, data_dir: Path,
              beside: Callable[[Agent], Callable[[], None]] | None = None) -> Run:
    """The agent's full path: validate, clean, persist, then acknowledge; ``beside`` starts
    something next to the agent for the timed drain (the dashboard) and returns its stop."""
    cfg = bench_config(broker, data_dir, name)
    first = Agent(cfg)
    first.start()
    if not first.mqtt.wait_connected(10):
        raise AgentError("the agent did not connect")
    time.sleep(0.2)  # the subscription is in place once the broker handled it
    first.stop()
    _backlog(broker, count, devices)
    start, cpu = time.perf_counter(), cpu_seconds()
    agent = Agent(cfg)
    stop_beside = beside(agent) if beside is not None else None
    agent.start()
    _wait(lambda: agent.ingestor.rows_total >= count, 600, "the agent to persist every reading")
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    received = agent.ingestor.counters.received
    if stop_beside is not None:
        stop_beside()
    agent.stop()
    check = Agent(cfg)  # anything not acknowledged would be redelivered now
    check.start()
    time.sleep(1.0)
    redelivered = check.ingestor.counters.received
    persisted = check.store.count()
    check.stop()
    if redelivered:
        raise AgentError(f"{redelivered} readings were redelivered: not all were acknowledged")
    return Run(seconds, received, persisted, cpu)


def rss_mb() -> tuple[float, float]:
    """Current and peak resident memory of this process, in MB."""
    current = psutil.Process().memory_info().rss / 1e6
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    return current, peak


def _round(broker: Mosquitto, tmp: Path, count: int, devices: int, label: str,
           echo: Callable[[str], None]) -> tuple[Run, Run]:
    b = baseline(broker, count, devices, f"bench-baseline-{label}")
    echo(f"  round {label}: baseline {b.rate:,.0f} readings/s ({b.seconds:.2f}s), "
         f"CPU {b.cpu_per_1000:.3f} s per 1,000 readings")
    a = agent_run(broker, count, devices, f"bench-agent-{label}", tmp / f"agent-{label}")
    echo(
        f"  round {label}: agent    {a.rate:,.0f} readings/s ({a.seconds:.2f}s), "
        f"CPU {a.cpu_per_1000:.3f} s per 1,000 readings, {a.persisted} rows persisted, "
        f"ratio {a.rate / b.rate:.2f}, CPU ratio {a.cpu / max(b.cpu, 1e-9):.2f}"
    )
    return b, a


def pinned(broker: Mosquitto) -> bool:
    """Pin this process (and the threads it starts from now on) to one core and the broker to
    another, as ``taskset`` would: the closest thing here to a Pi's one slow core. False if
    the machine has a single core or affinity cannot be set."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2 or broker.proc is None:
        return False
    try:
        os.sched_setaffinity(0, {cores[0]})
        os.sched_setaffinity(broker.proc.pid, {cores[1]})
    except OSError:
        return False
    return True


def run_bench(count: int, *, devices: int, rounds: int, echo: Callable[[str], None],
              pin: bool = True) -> bool:
    if count < 1 or devices < 1 or rounds < 1:
        raise AgentError("readings, devices and rounds must be at least 1")
    echo(
        f"bench ingest: {count} QoS 1 readings from {devices} devices, {rounds} round(s), "
        f"receive maximum {RECEIVE_MAXIMUM}, private Mosquitto on loopback"
    )
    base_runs: list[Run] = []
    agent_runs: list[Run] = []
    one_core: tuple[Run, Run] | None = None
    with Mosquitto() as broker, tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        for r in range(rounds):
            b, a = _round(broker, Path(tmp), count, devices, str(r + 1), echo)
            base_runs.append(b)
            agent_runs.append(a)
        if pin and pinned(broker):
            one_core = _round(broker, Path(tmp), count, devices, "pinned", echo)
            agent_runs.append(one_core[1])
    best_b = max(base_runs, key=lambda x: x.rate)
    best_a = max(agent_runs[:rounds], key=lambda x: x.rate)
    ratio = best_a.rate / best_b.rate
    worst = min(a.rate / b.rate for a, b in zip(agent_runs, base_runs, strict=False))
    lost = count - min(a.persisted for a in agent_runs)
    cpu_b = sum(b.cpu for b in base_runs) / sum(b.received for b in base_runs) * 1000
    cpu_a = sum(a.cpu for a in agent_runs[:rounds]) / sum(a.received for a in agent_runs[:rounds])
    cpu_a *= 1000
    current, peak = rss_mb()
    echo(f"baseline (bare paho subscriber, QoS 1, counts only): {best_b.rate:,.0f} readings/s")
    echo(f"agent (validate, clean, persist, acknowledge):       {best_a.rate:,.0f} readings/s")
    echo(f"ratio agent/baseline: {ratio:.2f}, worst round {worst:.2f} (target >= {TARGET})")
    echo(f"CPU per 1,000 readings: agent {cpu_a:.3f} s, baseline {cpu_b:.3f} s, "
         f"ratio {cpu_a / cpu_b:.2f} (target <= {CPU_TARGET})")
    if one_core is not None:
        b, a = one_core
        echo(f"pinned to one core (broker on another): baseline {b.rate:,.0f} readings/s, "
             f"agent {a.rate:,.0f} readings/s, ratio {a.rate / b.rate:.2f}, "
             f"CPU ratio {a.cpu / max(b.cpu, 1e-9):.2f}")
    echo(
        f"rows persisted: {min(a.persisted for a in agent_runs)} of {count} "
        f"(lost: {lost}, redelivered after restart: 0)"
    )
    echo(
        f"agent process resident memory: {current:.0f} MB now, {peak:.0f} MB peak "
        f"(bench, broker client and agent in one process)"
    )
    return lost == 0
