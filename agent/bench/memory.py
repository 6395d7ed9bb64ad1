"""``edge-agent bench memory``: the resident memory of ``edge-agent run`` with the bundled model,
one run per engine, after a load period of ``firmware-sim load`` (and band crossings, so that
the engine decides): now and peak, split into the agent's own memory (anonymous) and the file
pages it maps (the model, shared libraries), against the issue's 160 MB; and its proportional
share (PSS: a shared library's pages divided among the processes that map them)."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.bench.e2e import EngineRun, cross, wait_ready
from agent.bench.harness import AgentProcess, Watcher, agent_config
from agent.broker import Mosquitto
from firmware_sim.load import run_load

TARGET_MB = 160.0


@dataclass(frozen=True, slots=True)
class Footprint:
    engine: str
    ran: str
    rss_mb: float
    peak_mb: float
    anon_mb: float
    file_mb: float
    pss_mb: float
    stored: int


def footprint(pid: int) -> tuple[float, float, float, float, float]:
    """(resident, peak, anonymous, file-backed, proportional) MB of process ``pid`` (Linux
    /proc; proportional is 0 where ``smaps_rollup`` is missing)."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
            fields[key] = int(rest.split()[0]) * 1024 / 1e6
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                fields["Pss"] = int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return (fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0), fields.get("RssAnon", 0.0),
            fields.get("RssFile", 0.0) + fields.get("RssShmem", 0.0), fields.get("Pss", 0.0))


def measure(broker: Mosquitto, tmp: Path, engine: str, *, seconds: float,
            rate: float) -> Footprint:
    agent_id = f"memory-{engine}"
    config = agent_config(broker, tmp / agent_id, agent_id, engine)
    watch = Watcher(broker, agent_id)
    try:
        with AgentProcess(config) as proc:
            ran = wait_ready(watch, proc, f"bench-{engine}", engine)
            stored0 = int(watch.status.get("readings_total", 0))
            load = threading.Thread(target=run_load, args=[broker.host, broker.port],
                                    kwargs={"devices": 20, "rate": rate, "duration": seconds})
            load.start()
            crossings = max(1, int(seconds / 2))
            cross(watch, crossings, seconds / crossings, EngineRun(engine))
            load.join()
            time.sleep(1.5)  # one status interval
            rss, peak, anon, file, pss = footprint(proc.pid)
            stored = int(watch.status.get("readings_total", 0)) - stored0
    finally:
        watch.close()
    return Footprint(engine, ran, rss, peak, anon, file, pss, stored)


def run_bench(*, engines: list[str], seconds: float, rate: float,
              echo: Callable[[str], None]) -> bool:
    echo(f"bench memory: edge-agent run with the bundled model, {seconds:g}s of "
         f"{rate:g} readings/s and band crossings per engine; private Mosquitto on loopback")
    ok = True
    with Mosquitto() as broker, tempfile.TemporaryDirectory(prefix="edge-memory-") as tmp:
        for engine in engines:
            f = measure(broker, Path(tmp), engine, seconds=seconds, rate=rate)
            ran = "" if f.ran == engine else f" [ran on {f.ran}]"
            met = f.rss_mb <= TARGET_MB and f.peak_mb <= TARGET_MB
            ok = ok and met
            echo(f"  {engine:<5} resident {f.rss_mb:5.0f} MB, peak {f.peak_mb:5.0f} MB "
                 f"(own {f.anon_mb:.0f} MB + mapped files {f.file_mb:.0f} MB; "
                 f"PSS {f.pss_mb:.0f} MB), "
                 f"{f.stored} readings stored; target <= {TARGET_MB:.0f} MB: "
                 f"{'met' if met else 'NOT MET'}{ran}")
    return ok
