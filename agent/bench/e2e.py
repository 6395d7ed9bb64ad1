"""``edge-agent bench e2e``: the whole path as users run it, engine by engine in one run.

A private Mosquitto; ``edge-agent run`` in its own process with one policy on one temperature
(rules, then each other engine asked for); ``firmware-sim load`` streaming readings from other
devices at a chosen rate; meanwhile the policy's thermometer crosses its band every
``--every`` seconds. Each crossing is timed from the moment its reading is published to the
moment the signed command arrives on the actuator's ``/set`` topic (both clocks in this
process). Also printed: readings/s stored against readings/s sent (with the ingest backlog
at the end: no growth means the rate is sustained), and the agent's resident memory.
"""

from __future__ import annotations

import functools
import json
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.bench.harness import (
    DEVICE,
    AgentProcess,
    Watcher,
    agent_config,
    percentile,
    rss_mb,
)
from agent.broker import Mosquitto
from agent.errors import AgentError
from firmware_sim.load import run_load

TARGETS = {"rules": 20.0, "embed": 300.0, "llm": float("inf")}  # p99 ms, issue 17
PREPARE_TIMEOUT = 900.0  # an embed head is trained and gated on first use


@dataclass
class EngineRun:
    engine: str  # the engine asked for
    ran: str = ""  # the engine the policy ran on (a failed gate falls back to rules)
    latencies_ms: list[float] = field(default_factory=list)
    missed: int = 0  # crossings with no command within the timeout
    sent: int = 0
    stored: int = 0
    seconds: float = 0.0
    backlog_end: int = 0
    backlog_max: int = 0
    rss_mb: float = 0.0
    peak_mb: float = 0.0
    cpu_s: float = 0.0


def wait_ready(watch: Watcher, proc: AgentProcess, name: str, engine: str) -> str:
    """Wait until the policy's engine is settled and the model loaded (its load and trial are
    start-up work, not the cost of the readings timed next); the engine it runs on."""

    def settled() -> bool:
        st = watch.status.get("policies", {}).get(name)
        if watch.status.get("state") != "online" or st is None:
            return False
        if watch.status.get("model_state") == "loading":
            return False
        return engine == "rules" or st.get("engine") == engine or st.get("state") not in (
            None, "pending", "preparing")

    deadline = time.monotonic() + PREPARE_TIMEOUT
    while True:
        proc.check()
        try:
            watch.wait(settled, 1.0, "")
            break
        except AgentError:
            if time.monotonic() > deadline:
                raise AgentError(f"timed out waiting for policy {name} on {engine}") from None
    return str(watch.status["policies"][name]["engine"])


def _more(watch: Watcher, have: int) -> bool:
    return len(watch.commands) > have


def cross(watch: Watcher, crossings: int, every: float, run: EngineRun) -> None:
    """Publish readings that cross the band; time each until its command is on the wire."""
    topic = f"edge/sensors/{DEVICE}/temperature"
    values = (22.0, 26.0)  # inside (-> off), above (-> cool)
    watch.publish(topic, json.dumps({"value": values[0], "ts": time.time(), "seq": 0}).encode())
    time.sleep(every)
    for i in range(1, crossings + 1):
        have = len(watch.commands)
        started = time.perf_counter()
        payload = {"value": values[i % 2], "ts": time.time(), "seq": i}
        watch.publish(topic, json.dumps(payload).encode())
        try:
            watch.wait(functools.partial(_more, watch, have), 5.0, "the command")
            run.latencies_ms.append((watch.commands[have][0] - started) * 1000)
        except AgentError:
            run.missed += 1
        time.sleep(max(0.0, every - (time.perf_counter() - started)))


def _stream(broker: Mosquitto, rate: float, seconds: float, run: EngineRun) -> None:
    if rate > 0:
        run.sent = run_load(broker.host, broker.port, devices=20, rate=rate,
                            duration=seconds).sent


def run_engine(broker: Mosquitto, tmp: Path, engine: str, *, rate: float, crossings: int,
               every: float) -> EngineRun:
    name = f"bench-{engine}"
    agent_id = f"e2e-{engine}"
    run = EngineRun(engine)
    config = agent_config(broker, tmp / agent_id, agent_id, engine)
    watch = Watcher(broker, agent_id)
    try:
        with AgentProcess(config) as proc:
            run.ran = wait_ready(watch, proc, name, engine)
            stored0 = int(watch.status.get("readings_total", 0))
            cpu0 = proc.cpu_seconds()
            started = time.perf_counter()
            seconds = crossings * every + every
            stream = threading.Thread(target=_stream, args=[broker, rate, seconds, run])
            stream.start()
            cross(watch, crossings, every, run)
            while stream.is_alive():
                run.backlog_max = max(run.backlog_max, int(watch.status.get("queue_depth", 0)))
                stream.join(0.5)
            run.seconds = time.perf_counter() - started
            time.sleep(1.5)  # one status interval: the counts at the end of the stream
            run.backlog_end = int(watch.status.get("queue_depth", 0))
            run.stored = int(watch.status.get("readings_total", 0)) - stored0
            run.cpu_s = proc.cpu_seconds() - cpu0
            run.rss_mb, run.peak_mb = rss_mb(proc.pid)
    finally:
        watch.close()
    return run


def report(run: EngineRun, echo: Callable[[str], None]) -> None:
    lat = run.latencies_ms
    target = TARGETS.get(run.engine, float("inf"))
    p99 = percentile(lat, 99)
    verdict = "" if target == float("inf") else (
        f" (target p99 <= {target:.0f} ms: {'met' if p99 <= target else 'NOT MET'})")
    ran = "" if run.ran == run.engine else f" [ran on {run.ran}: its gate failed]"
    echo(f"  {run.engine:<5} reading -> command: p50 {percentile(lat, 50):6.1f} ms, "
         f"p95 {percentile(lat, 95):6.1f} ms, p99 {p99:6.1f} ms over {len(lat)} crossings, "
         f"{run.missed} missed{verdict}{ran}")
    stored_rate = run.stored / run.seconds if run.seconds else 0.0
    sent_rate = run.sent / run.seconds if run.seconds else 0.0
    steady = "sustained" if run.backlog_end <= max(50, run.backlog_max // 10) else "BACKLOG GROWS"
    echo(f"        readings: {sent_rate:,.0f}/s sent, {stored_rate:,.0f}/s stored, backlog "
         f"max {run.backlog_max}, at end {run.backlog_end} ({steady}); agent CPU "
         f"{1000 * run.cpu_s / max(1, run.stored):.3f} s per 1,000 readings")
    echo(f"        agent resident memory: {run.rss_mb:.0f} MB now, {run.peak_mb:.0f} MB peak")


def run_bench(*, engines: list[str], rate: float, crossings: int, every: float,
              echo: Callable[[str], None]) -> bool:
    if crossings < 1 or every <= 0 or rate < 0:
        raise AgentError("crossings and --every must be positive, --rate at least 0")
    echo(f"bench e2e: {crossings} band crossings every {every:g}s per engine while "
         f"{rate:g} readings/s stream from 20 devices; private Mosquitto on loopback")
    runs = []
    with Mosquitto() as broker, tempfile.TemporaryDirectory(prefix="edge-e2e-") as tmp:
        for engine in engines:
            run = run_engine(broker, Path(tmp), engine, rate=rate, crossings=crossings,
                             every=every)
            report(run, echo)
            runs.append(run)
    return all(r.missed == 0 for r in runs)
