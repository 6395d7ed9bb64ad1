"""The notify protocol against a real AF_UNIX datagram socket set as NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.service import systemd
from agent.service.systemd import Heartbeat, Watchdog, progressing
from tests.helpers import Clock


class NotifySocket:
    """What systemd listens on: a datagram socket; ``read()`` returns one notification."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.settimeout(5)

    def read(self) -> str:
        return self.sock.recv(4096).decode()

    def pending(self) -> list[str]:
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            return out
        finally:
            self.sock.settimeout(5)


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    # a short directory of our own: AF_UNIX paths are limited to 108 bytes
    with tempfile.TemporaryDirectory(prefix="sd-") as tmp:
        path = Path(tmp) / "notify"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(path))
            monkeypatch.setenv("NOTIFY_SOCKET", str(path))
            yield NotifySocket(sock)


def test_without_notify_socket_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.ready() is False
    assert systemd.status("starting") is False
    assert systemd.watchdog_ping() is False
    assert systemd.stopping() is False


def test_ready_status_watchdog_stopping_arrive(notify_socket: NotifySocket) -> None:
    assert systemd.ready("connected to 127.0.0.1:1883, model smollm2.gguf")
    assert notify_socket.read() == "READY=1\nSTATUS=connected to 127.0.0.1:1883, model smollm2.gguf"
    assert systemd.status("ingesting\n42 readings")
    assert notify_socket.read() == "STATUS=ingesting 42 readings"  # one line, always
    assert systemd.watchdog_ping()
    assert notify_socket.read() == "WATCHDOG=1"
    assert systemd.extend_timeout(2.5)
    assert notify_socket.read() == "EXTEND_TIMEOUT_USEC=2500000"
    assert systemd.stopping()
    assert notify_socket.read() == "STOPPING=1"


def test_several_lines_travel_in_one_datagram(notify_socket: NotifySocket) -> None:
    assert systemd.notify("STATUS=loading", "MAINPID=1234")
    assert notify_socket.read() == "STATUS=loading\nMAINPID=1234"
    with pytest.raises(ValueError, match="newline"):
        systemd.notify("STATUS=a\nREADY=1")


def test_abstract_socket_names(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"edge-agent-test-{os.getpid()}-{threading.get_ident()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.ready()
        sock.settimeout(5)
        assert sock.recv(4096) == b"READY=1"


def test_a_vanished_socket_is_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert systemd.watchdog_ping() is False
    assert systemd.watchdog_ping() is False
    assert caplog.text.count("cannot notify systemd") == 1  # not once per ping


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "x"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert systemd.watchdog_interval(env) == expected


@dataclass
class Queue:
    depth: int
    last: float


def test_progressing_is_alive_when_idle_or_moving_and_stalled_otherwise() -> None:
    clock = Clock()
    queue = Queue(depth=0, last=clock.now)
    check = progressing(lambda: queue.depth, lambda: queue.last, 30, clock=clock)
    clock.now += 3600
    assert check()  # idle for an hour: nothing to do is not a stall
    queue.depth = 5
    assert not check()  # work waiting, nothing committed for an hour
    queue.last = clock.now - 10
    assert check()


def test_heartbeat() -> None:
    clock = Clock()
    beat = Heartbeat(20, clock=clock)
    assert beat()
    clock.now += 21
    assert not beat()
    beat.beat()
    assert beat()


def test_watchdog_pings_only_while_every_check_passes(notify_socket: NotifySocket) -> None:
    alive = {"ingest": True, "scheduler": True}
    dog = Watchdog(5, {"ingest": lambda: alive["ingest"], "scheduler": lambda: alive["scheduler"]})
    assert dog.step()
    assert notify_socket.read() == "WATCHDOG=1"

    alive["ingest"] = False
    assert not dog.step()
    assert notify_socket.read() == "STATUS=watchdog: no progress in ingest; pings withheld"
    assert not dog.step()
    assert not dog.step()
    assert notify_socket.pending() == []  # no pings while stalled (and the status once)

    alive["ingest"] = True
    assert dog.step()
    assert notify_socket.read() == "STATUS=running"
    assert notify_socket.read() == "WATCHDOG=1"


def test_a_raising_check_counts_as_stalled(notify_socket: NotifySocket) -> None:
    def broken() -> bool:
        raise RuntimeError("queue gone")

    dog = Watchdog(5, {"ingest": broken})
    assert not dog.step()
    assert notify_socket.read().startswith("STATUS=watchdog: no progress in ingest")
    assert notify_socket.pending() == []


def test_watchdog_thread_stops_pinging_when_ingest_stalls(notify_socket: NotifySocket) -> None:
    """The thread pings while the queue moves; once work waits with no progress, it stops."""
    clock = Clock()
    queue = Queue(depth=3, last=clock.now)
    ingest = progressing(lambda: queue.depth, lambda: queue.last, 30, clock=clock)
    dog = Watchdog(0.01, {"ingest": ingest, "scheduler": lambda: True})
    dog.start()
    try:
        assert notify_socket.read() == "WATCHDOG=1"
        clock.now += 60  # the ingest thread has committed nothing for a minute
        message = notify_socket.read()
        while message == "WATCHDOG=1":  # pings already sent before the stall was seen
            message = notify_socket.read()
    finally:
        dog.stop()
    assert message == "STATUS=watchdog: no progress in ingest; pings withheld"
    assert dog.failing == ["ingest"]
    assert notify_socket.pending() == []  # after the stall report: silence


def test_from_env() -> None:
    assert Watchdog.from_env({}, env={}) is None
    dog = Watchdog.from_env({}, env={"WATCHDOG_USEC": "20000000"})
    assert dog is not None and dog.interval == 10.0
