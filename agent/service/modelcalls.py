"""The model as the decisions and intents call it: on the inference worker, with a deadline,
under the tuned adapter installed for the job (if any)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import AgentError
from agent.inference.adapters import INTENTS, adapter_for
from agent.inference.worker import InferenceWorker

DECIDE_TIMEOUT = 20.0


class ModelCalls:
    """Calls on the one inference worker; ``worker`` is None while no model can run (and is
    swapped when a model update installs another)."""

    def __init__(
        self, worker: InferenceWorker | None, data_dir: Path, model_sha256: str | None
    ) -> None:
        self.worker = worker
        self.data_dir = data_dir
        self.model_sha256 = model_sha256

    def call(self, fn: Callable[[Any], Any]) -> Any:
        if self.worker is None:
            raise AgentError("no model loaded")
        return self.worker.call(fn, DECIDE_TIMEOUT)

    def embed(self, text: str) -> np.ndarray:
        vector: np.ndarray = self.call(lambda m: m.embed(text))
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
