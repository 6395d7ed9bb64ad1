"""A running agent whose ingest is stalled stops feeding systemd's watchdog, and starts again
when the stall ends: the real agent process, the real notify socket, a database really locked
by another process."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.broker import Mosquitto, free_port
from tests.conftest import Collector, agent_config, wait_for
from tests.helpers import ROOT

pytestmark = pytest.mark.broker
TEMPERATURE = "edge/sensors/livingroom-1/temperature"


class Notifications:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.lines: list[tuple[float, str]] = []

    def drain(self) -> list[tuple[float, str]]:
        try:
            while True:
                data = self.sock.recv(4096).decode()
                self.lines.extend((time.monotonic(), line) for line in data.splitlines())
        except TimeoutError:
            pass
        return self.lines

    def last_ping(self) -> float:
        return max((t for t, line in self.drain() if line == "WATCHDOG=1"), default=0.0)


def test_a_locked_database_stops_the_watchdog_pings_until_it_is_released(
        tmp_path: Path, broker: Mosquitto, collector_factory: Callable[..., Collector]) -> None:
    notify = Notifications(tmp_path / "notify.sock")
    cfg = agent_config(tmp_path, broker.port, service__stall_after="2s")
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"),
               WATCHDOG_USEC="1000000", WATCHDOG_PID="")
    log = (tmp_path / "agent.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(cfg)], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    pub = collector_factory(broker.port)
    db = tmp_path / "data" / "edge-agent.db"
    try:
        wait_for(lambda: any(line == "READY=1" for _, line in notify.drain()), timeout=90,
                 what="READY=1")
        wait_for(lambda: notify.last_ping() > 0, timeout=30, what="watchdog pings")
        locker = sqlite3.connect(db, timeout=30, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # the agent can no longer commit a reading
        for i in range(20):
            pub.publish(TEMPERATURE, json.dumps({"value": 21.0 + i / 10, "seq": i + 1}))
        # the pings stop: a gap of twice the stall allowance with none arriving
        wait_for(lambda: time.monotonic() - notify.last_ping() > 4.0, timeout=60,
                 what="the pings to stop while ingest is stalled")
        assert any(line.startswith("STATUS=") and "ingest" in line for _, line in notify.lines)
        stalled_at = time.monotonic()
        locker.execute("ROLLBACK")
        locker.close()
        wait_for(lambda: notify.last_ping() > stalled_at, timeout=60,
                 what="the pings to come back once the database is free")
        check = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        wait_for(lambda: check.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == 20,
                 timeout=60, what="every reading stored after the stall")
        check.close()
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(30)
        notify.sock.close()
        log.close()


def test_ready_is_held_back_while_the_broker_is_down(tmp_path: Path) -> None:
    """No READY=1 until the broker answers: systemd must not think the agent is up while it
    cannot receive a reading; the status line says what it waits for."""
    port = free_port()
    notify = Notifications(tmp_path / "notify.sock")
    cfg = agent_config(tmp_path, port)
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
    log = (tmp_path / "agent.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(cfg)], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: any("waiting for the broker" in line for _, line in notify.drain()),
                 timeout=60, what="a status saying it waits for the broker")
        time.sleep(3)  # long enough for a READY=1 that should not come
        assert not any(line == "READY=1" for _, line in notify.drain())
        workdir = tmp_path / "broker"
        workdir.mkdir()
        with Mosquitto(port=port, workdir=workdir):
            wait_for(lambda: any(line == "READY=1" for _, line in notify.drain()), timeout=60,
                     what="READY=1 once the broker is up")
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(30)
        notify.sock.close()
        log.close()
