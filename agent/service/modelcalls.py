"""The model as the decisions and intents call it: on the inference worker, with a deadline,
under the tuned adapter installed for the job (if any)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import AgentError
from agent.inference.adapters import INTENTS, adapter_for
from agent.inference.worker import InferenceWorker

DECIDE_TIMEOUT = 20.0
EMBED_CACHE = 512  # digests remembered with their embedding (2.3 kB each for the bundled model)


class ModelCalls:
    """Calls on the one inference worker; ``worker`` is None while no model can run (and is
    swapped when a model update installs another)."""

    def __init__(
        self, worker: InferenceWorker | None, data_dir: Path, model_sha256: str | None
    ) -> None:
        self._worker = worker
        self.data_dir = data_dir
        self.model_sha256 = model_sha256
        # a digest repeats whenever the readings do (quantised sensors, a steady room): its
        # embedding is the same until the model changes, so it is computed once
        self._embeddings: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.embed_hits = 0
        self.embed_misses = 0

    @property
    def worker(self) -> InferenceWorker | None:
        return self._worker

    @worker.setter
    def worker(self, worker: InferenceWorker | None) -> None:
        with self._lock:  # another model embeds differently
            self._worker = worker
            self._embeddings.clear()

    def call(self, fn: Callable[[Any], Any]) -> Any:
        if self.worker is None:
            raise AgentError("no model loaded")
        return self.worker.call(fn, DECIDE_TIMEOUT)

    def embed(self, text: str, fixed: str = "") -> np.ndarray:
        """The text's embedding (read-only: it may be shared with the next caller); ``fixed``
        as in ``Model.embed``."""
        with self._lock:
            vector = self._embeddings.get(text)
            if vector is not None:
                self._embeddings.move_to_end(text)
                self.embed_hits += 1
                return vector
            worker = self._worker
        vector = np.asarray(self.call(lambda m: m.embed(text, fixed)))
        vector.flags.writeable = False
        with self._lock:
            self.embed_misses += 1
            if self._worker is worker:
                self._embeddings[text] = vector
                while len(self._embeddings) > EMBED_CACHE:
                    self._embeddings.popitem(last=False)
        return vector

    def chat(self, system: str, user: str) -> tuple[str, str]:
        parts: tuple[str, str] = self.call(lambda m: m.chat(system, user))
        return parts

    def scorer(self, adapter: Path | None) -> Callable[[str, str, Sequence[str]], list[float]]:
        """Option scores under ``adapter`` (None: the base model)."""

        def score(p: str, s: str, o: Sequence[str]) -> list[float]:
            def run(m: Any) -> list[float]:
                with m.adapter(adapter):
                    scores: list[float] = m.score(p, s, o)
                    return scores

            result: list[float] = self.call(run)
            return result

        return score

    def generate(self, system: str, user: str, grammar: str) -> str:
        """The model's answer to an intent under its grammar (agent.service.intents)."""
        # the adapter of edge-agent tune --intents, if one is installed for this base model
        adapter = adapter_for(self.data_dir, INTENTS, self.model_sha256)

        def run(model: Any) -> str:
            with model.adapter(adapter):
                prefix, suffix = model.chat(system, user)
                text: str = model.generate(prefix, suffix, grammar=grammar, max_tokens=64)
                return text

        text: str = self.call(run)
        return text
