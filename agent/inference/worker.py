"""One thread owns the model: it loads it, runs every request in order and closes it.

llama.cpp contexts are not thread-safe and a second inference thread would only compete for
the same cores, so requests queue here. ``call`` waits at most ``timeout`` seconds; a
request that has not started by then is cancelled and never runs.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from agent.errors import AgentError
from agent.inference.model import Model

log = logging.getLogger(__name__)

T = TypeVar("T")


class InferenceTimeout(AgentError):
    """An inference request did not finish within its caller's timeout."""


@dataclass(frozen=True)
class _Request:
    fn: Callable[[Model], Any]
    future: concurrent.futures.Future[Any]


class InferenceWorker:
    """Runs ``fn(model)`` requests on the thread that created the model from ``factory``."""

    def __init__(self, factory: Callable[[], Model], *, name: str = "inference") -> None:
        self._factory = factory
        self._name = name
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._model: Model | None = None
        self._load_error: AgentError | None = None
        self._loaded = threading.Event()  # set once loading ended, either way
        self.ready = threading.Event()  # set once the model can be used
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # submit vs. the final drain: nothing is left queued
        self._closed = False

    def start(self) -> None:
        if self._thread is not None:
            raise AgentError("the inference worker was already started")
        self._thread = threading.Thread(target=self._main, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Cancel what has not started, let the running request finish, close the model."""
        self._stopping.set()
        self._queue.put(None)
        if self._thread is None:  # never started: fail what was submitted
            self._drain()
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("inference worker still busy after %s s; leaving it", timeout)

    def wait_ready(self, timeout: float | None = None) -> Model:
        """The model once loaded; AgentError if loading failed, InferenceTimeout if slower."""
        if not self._loaded.wait(timeout):
            raise InferenceTimeout(f"the model did not load within {timeout} s")
        if self._load_error is not None:
            raise self._load_error
        return self.model

    @property
    def model(self) -> Model:
        """The loaded model: read its attributes anywhere, call its methods only via submit."""
        if self._model is None:
            raise AgentError("the model is not loaded")
        return self._model

    def submit(self, fn: Callable[[Model], T]) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._load_error is not None:
                raise self._load_error
            if self._closed or self._stopping.is_set():
                raise AgentError("the inference worker is stopped")
            self._queue.put(_Request(fn, future))
        return future

    def call(self, fn: Callable[[Model], T], timeout: float) -> T:
        """``fn(model)`` on the worker thread; its exceptions propagate unchanged."""
        future = self.submit(fn)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            if future.cancel():
                raise InferenceTimeout(f"inference did not start within {timeout} s") from None
            if future.done():  # finished in the meantime
                return future.result()
            raise InferenceTimeout(f"inference did not finish within {timeout} s") from None

    def queue_depth(self) -> int:
        """Requests waiting to start (the running one is not counted)."""
        return self._queue.qsize()

    def _main(self) -> None:
        if self._load():
            self._serve()
        self._drain()
        if self._model is not None:
            self._model.close()

    def _load(self) -> bool:
        try:
            self._model = self._factory()
        except AgentError as exc:
            self._load_error = exc
        except Exception as exc:  # a broken factory must still wake wait_ready
            log.exception("the model factory failed")
            self._load_error = AgentError(f"cannot load model: {exc}")
        if self._load_error is None:
            self.ready.set()
        self._loaded.set()
        return self._load_error is None

    def _serve(self) -> None:
        while not self._stopping.is_set():
            request = self._queue.get()
            if request is None:
                return
            self._run(request)

    def _run(self, request: _Request) -> None:
        if not request.future.set_running_or_notify_cancel():
            return
        try:
            result = request.fn(self.model)
        except BaseException as exc:  # handed to the caller as it is
            request.future.set_exception(exc)
        else:
            request.future.set_result(result)

    def _drain(self) -> None:
        """Fail what is still queued, with the load error if loading failed."""
        with self._lock:
            self._closed = True
        reason = self._load_error or AgentError("the inference worker stopped before running it")
        while True:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                return
            if request is not None and request.future.set_running_or_notify_cancel():
                request.future.set_exception(reason)
