"""Reusable llama.cpp buffers: one batch of tokens for sequence 0, and the candidates array a
sampler picks from (logits we hold, not the context's)."""

from __future__ import annotations

import ctypes
import weakref
from collections.abc import Sequence
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

from agent.errors import AgentError

Logits = npt.NDArray[np.float32]
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


class Batch:
    """One reusable llama_batch for sequence 0."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._native: Any = llama_cpp.llama_batch_init(capacity, 0, 1)
        self.close = weakref.finalize(self, llama_cpp.llama_batch_free, self._native)

    def fill(self, tokens: Sequence[int], start: int, *, all_outputs: bool) -> Any:
        batch = self._native
        batch.n_tokens = len(tokens)
        for i, token in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = start + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = all_outputs
        batch.logits[len(tokens) - 1] = True
        return batch


class Candidates:
    """A reusable llama_token_data_array: sampling from logits we hold, not the context's."""

    def __init__(self, n_vocab: int) -> None:
        self._data = np.zeros(n_vocab, dtype=_TOKEN_DATA)
        self._ids = np.arange(n_vocab, dtype=np.int32)

    def pick(self, chain: Any, logits: Logits) -> int:
        self._data["id"] = self._ids
        self._data["logit"] = logits
        self._data["p"] = 0.0
        array = llama_cpp.llama_token_data_array(
            data=self._data.ctypes.data_as(llama_cpp.llama_token_data_p),
            size=len(self._data),
            selected=-1,
            sorted=False,
        )
        llama_cpp.llama_sampler_apply(chain, ctypes.byref(array))
        if array.selected < 0:
            raise AgentError("the sampler chose no token")
        token = int(array.data[array.selected].id)
        llama_cpp.llama_sampler_accept(chain, token)
        return token
