"""How many threads llama.cpp gets: only cores that nobody else is busy on.

llama.cpp's threads (OpenMP) spin-wait for each other after every matrix product, so a
thread that shares its core with another busy process stalls all the others: on a shared
2-core machine two threads ran 6x slower than one. Oversubscribing costs far more than
leaving a core idle, hence the conservative count below.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import psutil

from agent.errors import AgentError

log = logging.getLogger(__name__)

# a core that is busier than this (in cores' worth of work) is not free
_SLACK = 0.25
_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def usable_cores() -> list[int]:
    """The CPUs this process may run on, trimmed to a cgroup CPU quota when one is set."""
    cores = sorted(os.sched_getaffinity(0))
    quota = _cgroup_quota()
    if quota is not None:
        cores = cores[: max(1, math.ceil(quota))]
    return cores


def free_cores(*, sample_seconds: float = 0.3) -> int:
    """Usable cores minus those other work keeps busy (sampled for ``sample_seconds``); >= 1."""
    cores = usable_cores()
    busy = _busy(cores, sample_seconds)
    taken = max(0, math.ceil(busy - _SLACK))
    free = max(1, len(cores) - taken)
    log.debug("%d usable cores, %.2f busy, %d free", len(cores), busy, free)
    return free


def pick_threads(requested: int | None) -> int:
    """``requested`` if given (capped at the usable cores), else the free cores now."""
    if requested is None:
        return free_cores()
    if requested < 1:
        raise AgentError(f"model threads must be at least 1, got {requested}")
    cores = len(usable_cores())
    if requested > cores:
        log.warning("%d model threads requested but only %d cores usable", requested, cores)
        return cores
    return requested


def _busy(cores: list[int], sample_seconds: float) -> float:
    """Cores' worth of work running on ``cores`` during the sample."""
    percents = psutil.cpu_percent(interval=sample_seconds, percpu=True)
    return sum(percents[c] for c in cores if c < len(percents)) / 100.0


def _cgroup_quota() -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` ("max 100000" means none)."""
    try:
        quota, period = _CGROUP_CPU_MAX.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None
