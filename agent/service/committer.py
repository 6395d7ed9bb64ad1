"""A thread that commits one batch of readings at a time, beside the network thread.

The network thread hands a parsed batch over and goes back to reading: the commit (INSERT,
COMMIT and, with ``synchronous=FULL``, the fsync) no longer stops the socket. What follows a
commit (acknowledging it, the hooks) stays with the network thread; the committer only tells
it, through ``done``, that there is something to finish. The caller keeps at most one batch
in flight and waits for it before anything else uses the database, so the connection is
still used from one thread at a time.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import NamedTuple

from agent.pipeline.core import Processed


class _Job(NamedTuple):
    rows: list[Processed]
    future: Future[int | None]


class Committer:
    """``submit(rows)`` runs ``write(rows)`` on a thread of its own and returns its future;
    ``done`` is called (on that thread) once each result is set."""

    def __init__(
        self,
        write: Callable[[list[Processed]], int | None],
        done: Callable[[], None],
        name: str = "ingest-commit",
    ) -> None:
        self._write = write
        self._done = done
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, rows: list[Processed]) -> Future[int | None]:
        future: Future[int | None] = Future()
        self._jobs.put(_Job(rows, future))
        return future

    def stop(self) -> None:
        """End the thread once what was submitted is done (the caller has waited for it)."""
        self._jobs.put(None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job.future.set_result(self._write(job.rows))
            except BaseException as exc:  # handed to the network thread, which waits on it
                job.future.set_exception(exc)
            self._done()
