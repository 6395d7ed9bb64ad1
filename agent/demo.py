"""``edge-agent demo``: a private broker, simulated sensors with faults, and the agent.

It shows, as it happens, what the agent stores and how it cleans: raw and cleaned values,
outliers replaced, duplicates dropped, bad messages rejected, and the windowed features.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from agent.broker import Mosquitto
from agent.config import Config
from agent.service.runtime import Agent
from firmware_sim.load import connect
from firmware_sim.sensors import SensorSim

RATE_HZ = 4.0


def demo_sensors(prefix: str) -> list[SensorSim]:
    return [
        SensorSim(
            "livingroom-1",
            "temperature",
            22.0,
            amplitude=2.0,
            period_s=60,
            noise=0.08,
            spike_prob=0.03,
            duplicate_prob=0.05,
            seed=1,
            prefix=prefix,
        ),
        SensorSim(
            "livingroom-1",
            "humidity",
            45.0,
            amplitude=5.0,
            period_s=90,
            noise=0.8,
            bare_prob=0.3,
            seed=2,
            prefix=prefix,
        ),
        SensorSim(
            "kitchen-1",
            "temperature",
            24.0,
            amplitude=1.5,
            period_s=45,
            noise=0.1,
            fahrenheit=True,
            malformed_prob=0.04,
            seed=3,
            prefix=prefix,
        ),
        SensorSim(
            "kitchen-1",
            "co2",
            800.0,
            amplitude=300.0,
            period_s=120,
            noise=15.0,
            spike_prob=0.03,
            spike_size=2500.0,
            seed=4,
            prefix=prefix,
        ),
    ]


def _publish_loop(sensors: list[SensorSim], port: int, stop: threading.Event) -> None:
    client = connect("127.0.0.1", port, client_id="demo-sensors")
    try:
        while not stop.wait(1.0 / RATE_HZ):
            now = time.time()
            for sensor in sensors:
                for payload in sensor.messages(now):
                    client.publish(sensor.topic, payload, qos=1)
    finally:
        client.disconnect()
        client.loop_stop()


def _table(db: Path, agent: Agent) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute(
            "SELECT device, quantity, unit, count(*), sum(outlier), "
            "(SELECT raw || coalesce(raw_unit, '') || '|' || clean FROM readings r2 "
            " WHERE r2.series_id = series.id ORDER BY r2.id DESC LIMIT 1) "
            "FROM readings JOIN series ON series.id = series_id GROUP BY series.id "
            "ORDER BY device, quantity"
        ).fetchall()
    except sqlite3.OperationalError:
        rows = []
    finally:
        conn.close()
    lines = [
        f"{'series':26} {'stored':>6} {'outliers':>8} {'last raw':>10} {'clean':>8} "
        f"{'unit':4} {'1m mean':>8} {'min':>8} {'max':>8} {'slope/min':>9}"
    ]
    for device, quantity, unit, count, outliers, last in rows:
        raw, _, clean = (last or "||").partition("|")
        f = agent.pipeline.features(device, quantity, 60.0)
        stats = (
            ""
            if f is None
            else f"{f.mean:>8.2f} {f.min:>8.2f} {f.max:>8.2f} "
            f"{'' if f.slope_per_min is None else format(f.slope_per_min, '.2f'):>9}"
        )
        lines.append(
            f"{device + '/' + quantity:26} {count:>6} {outliers:>8} {raw:>10} "
            f"{float(clean):>8.2f} {unit or '':4} {stats}"
        )
    c = agent.ingestor.counters
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(c.rejected_by_reason.items())) or "none"
    lines.append(
        f"messages {c.received}: stored {agent.ingestor.rows_total}, within the "
        f"deadband (not written) {c.suppressed}, duplicates dropped {c.duplicates}, "
        f"rejected {c.rejected} ({reasons})"
    )
    return lines


def run_demo(
    config: Config, *, duration: float, data_dir: Path | None, echo: Callable[[str], None]
) -> None:
    tmp = None
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="edge-demo-")
        data_dir = Path(tmp.name)
    live = sys.stdout.isatty()
    with Mosquitto() as broker:
        cfg = config.model_copy(
            update={
                "agent": config.agent.model_copy(
                    update={"id": "demo-agent", "data_dir": data_dir, "status_interval": 5.0}
                ),
                "mqtt": config.mqtt.model_copy(
                    update={"host": broker.host, "port": broker.port, "subscriptions": None}
                ),
            }
        )
        echo(f"demo: Mosquitto on {broker.host}:{broker.port}, database {cfg.db_path}")
        echo(
            "demo: decisions arrive with the decision engine (issue 3); this demo shows ingest"
            " and cleaning"
        )
        agent = Agent(cfg)
        agent.start()
        if not agent.mqtt.wait_connected(10):
            agent.stop()
            raise SystemExit("demo: the agent could not connect to the broker")
        stop = threading.Event()
        sensors = demo_sensors(cfg.mqtt.prefix)
        pub = threading.Thread(target=_publish_loop, args=(sensors, broker.port, stop), daemon=True)
        pub.start()
        start = time.monotonic()
        try:
            while (left := duration - (time.monotonic() - start)) > 0:
                time.sleep(min(1.0 if live else 5.0, left))
                lines = _table(cfg.db_path, agent)
                if live:
                    sys.stdout.write("\x1b[H\x1b[2J")
                echo(
                    f"edge-agent demo: {time.monotonic() - start:5.1f}s of {duration:g}s "
                    f"(Ctrl-C stops)"
                )
                echo("\n".join(lines))
        except KeyboardInterrupt:
            echo("demo: interrupted")
        finally:
            stop.set()
            pub.join(5)
            time.sleep(0.5)
            agent.stop()
        echo("\nsummary")
        echo("\n".join(_table(cfg.db_path, agent)))
    if tmp is not None:
        tmp.cleanup()
    else:
        echo(f"the database stays in {cfg.db_path}: edge-agent readings -c <config> shows it")
