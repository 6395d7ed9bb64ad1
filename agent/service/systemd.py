"""systemd's notify protocol, without depending on systemd: a no-op outside a notify service.

``sd_notify(3)``: datagrams of ``KEY=value`` lines to the AF_UNIX socket named by
``NOTIFY_SOCKET`` (a path, or an abstract name written ``@name``). ``READY=1`` once the agent
is connected and its model loaded; ``STATUS=`` for ``systemctl status``; ``WATCHDOG=1`` only
while :class:`Watchdog` finds every part of the agent making progress, so that a stalled
ingest or a wedged scheduler stops the pings and systemd restarts the service;
``STOPPING=1`` on the way out.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

Check = Callable[[], bool]
_failed: set[str] = set()  # notify sockets already reported as unusable


def _address(env: Mapping[str, str]) -> str | None:
    name = env.get("NOTIFY_SOCKET")
    if not name:
        return None
    return "\0" + name[1:] if name.startswith("@") else name


def notify(*lines: str) -> bool:
    """Send ``lines`` as one notification; False when there is no notify socket (or it failed:
    a service manager that went away must not take the agent with it)."""
    address = _address(os.environ)
    if address is None or not lines:
        return False
    if any("\n" in line for line in lines):
        raise ValueError(f"a notification line may not contain a newline: {lines!r}")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(lines).encode())
    except OSError as exc:
        if address not in _failed:  # once: the watchdog would repeat it every few seconds
            _failed.add(address)
            log.warning("cannot notify systemd at %s: %s", address.replace("\0", "@"), exc)
        return False
    _failed.discard(address)
    return True


def ready(status_text: str | None = None) -> bool:
    return notify("READY=1", *_status_line(status_text))


def status(text: str) -> bool:
    return notify(*_status_line(text))


def watchdog_ping() -> bool:
    return notify("WATCHDOG=1")


def stopping(status_text: str | None = None) -> bool:
    return notify("STOPPING=1", *_status_line(status_text))


def extend_timeout(seconds: float) -> bool:
    """Ask for ``seconds`` more before systemd gives up on a start or a stop in progress."""
    return notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """systemd's watchdog timeout for this process in seconds (``WatchdogSec=``), or None.

    Like ``sd_watchdog_enabled(3)``: ``WATCHDOG_USEC`` must be a positive integer and
    ``WATCHDOG_PID``, when set, must be this process (a child does not inherit the duty).
    """
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 1_000_000


def _status_line(text: str | None) -> list[str]:
    return [] if text is None else [f"STATUS={' '.join(text.split())}"]


class Heartbeat:
    """Alive while a loop has called :meth:`beat` within ``max_age`` seconds (a check for the
    scheduler: a job that beats every few seconds stops beating when the loop is wedged)."""

    def __init__(self, max_age: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self.clock = clock
        self.last = clock()

    def beat(self) -> None:
        self.last = self.clock()

    def __call__(self) -> bool:
        return self.clock() - self.last <= self.max_age


def progressing(
    depth: Callable[[], int],
    last_progress: Callable[[], float],
    max_stall: float,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> Check:
    """A check for a work queue: alive when it is empty, or when its consumer made progress
    (``last_progress``, on ``clock``) within ``max_stall`` seconds. An idle agent is alive; one
    with work waiting and nothing done is stalled."""

    def check() -> bool:
        return depth() == 0 or clock() - last_progress() <= max_stall

    return check


class Watchdog:
    """Pings systemd every ``interval`` seconds while every check says its part is alive.

    ``checks`` maps a name ("ingest", "scheduler") to a function that returns True while that
    part makes progress. A failing (or raising) check withholds the ping, so systemd's
    ``WatchdogSec=`` runs out and it restarts the agent; the failing names are logged and
    sent as ``STATUS=`` once. Use half of :func:`watchdog_interval` as ``interval``, as
    ``sd_watchdog_enabled(3)`` advises.
    """

    def __init__(
        self,
        interval: float,
        checks: Mapping[str, Check],
        *,
        ping: Callable[[], object] = watchdog_ping,
        report: Callable[[str], object] = status,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"watchdog interval must be greater than 0, got {interval}")
        self.interval = interval
        self.checks = dict(checks)
        self.ping = ping
        self.report = report
        self.failing: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_env(
        cls, checks: Mapping[str, Check], env: Mapping[str, str] | None = None
    ) -> Watchdog | None:
        """A watchdog pinging at half systemd's timeout, or None when systemd set none."""
        timeout = watchdog_interval(env)
        return None if timeout is None else cls(timeout / 2, checks)

    def step(self) -> bool:
        """Run the checks once; ping if all pass. True when it pinged."""
        failing = [name for name, check in self.checks.items() if not self._alive(name, check)]
        if failing:
            if failing != self.failing:
                text = f"watchdog: no progress in {', '.join(failing)}; pings withheld"
                log.error("%s", text)
                self.report(text)
            self.failing = failing
            return False
        if self.failing:
            log.warning("watchdog: %s progressing again", ", ".join(self.failing))
            self.report("running")
            self.failing = []
        self.ping()
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while True:
            self.step()
            if self._stop.wait(self.interval):
                return

    @staticmethod
    def _alive(name: str, check: Check) -> bool:
        try:
            return bool(check())
        except Exception:
            log.exception("watchdog check %s raised", name)
            return False
