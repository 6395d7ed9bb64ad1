"""Coordinate-wise robust averages: one member cannot drag the result where the others are not.

- ``median``: per coordinate, the median of the members' values;
- ``trimmed-mean``: per coordinate, the mean after dropping the ``floor(trim * n)`` lowest and
  highest values (the median when that leaves nothing).

Used for the group's scores (:mod:`agent.peers.aggregate`, method ``mean``) and for FedAvg
(:mod:`agent.peers.rounds`), where it replaces the count weighting: a member's claimed count is
what an attacker would inflate. Deterministic for a given order of rows (callers sort by id).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from agent.errors import AgentError

RobustMethod = Literal["trimmed-mean", "median"]
Array = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Robust:
    method: RobustMethod = "trimmed-mean"
    trim: float = 0.2

    def __post_init__(self) -> None:
        if self.method not in ("trimmed-mean", "median") or not 0 <= self.trim < 0.5:
            raise AgentError(f"bad robust averaging settings: {self}")

    def label(self) -> str:
        return self.method if self.method == "median" else f"{self.method}:{self.trim:g}"

    def combine(self, rows: Array) -> Array:
        """The robust average of the rows of an ``n x d`` matrix (n >= 1)."""
        stacked = np.asarray(rows, dtype=np.float64)
        if stacked.ndim != 2 or stacked.shape[0] < 1:
            raise AgentError(f"robust average of a {stacked.shape} array")
        n = stacked.shape[0]
        cut = math.floor(self.trim * n) if self.method == "trimmed-mean" else 0
        if self.method == "median" or n - 2 * cut < 1:
            out: Array = np.median(stacked, axis=0)
            return out
        ordered = np.sort(stacked, axis=0)
        trimmed: Array = ordered[cut : n - cut].mean(axis=0)
        return trimmed
