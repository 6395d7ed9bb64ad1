"""Embeddings of repeated digests come from the cache, and a new model starts a new cache
(the real bundled model on the inference worker)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.inference.model import Model
from agent.inference.worker import InferenceWorker
from agent.service.modelcalls import ModelCalls
from tests.helpers import bundled

DIGEST = "livingroom-1 temperature 26.1 C is ABOVE the target range 20-24 C. Trend: rising."


def worker() -> InferenceWorker:
    found = bundled()
    w = InferenceWorker(lambda: Model(found.path, threads=1, context=256, sha256=found.sha256))
    w.start()
    w.wait_ready(120)
    return w


def test_a_repeated_digest_is_embedded_once_and_a_new_model_forgets(tmp_path: Path) -> None:
    w = worker()
    try:
        calls = ModelCalls(w, tmp_path, None)
        first = calls.embed(DIGEST)
        again = calls.embed(DIGEST)
        assert again is first and (calls.embed_misses, calls.embed_hits) == (1, 1)
        with pytest.raises(ValueError):
            first[0] = 0.0  # shared with every later caller: read-only
        calls.worker = w  # a model swap installs a worker: embeddings are computed anew
        fresh = calls.embed(DIGEST)
        assert fresh is not first and np.array_equal(fresh, first)
        assert calls.embed_misses == 2
    finally:
        w.stop(10)
