"""A softmax (multinomial logistic) head over model embeddings, trained with cross-entropy.

A few kilobytes of weights that a Pi trains in seconds and peers can average (FedAvg). Plain
numpy, full-batch gradient descent, deterministic: the same data gives the same head.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


def softmax(z: Array) -> Array:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: Array = e / e.sum(axis=-1, keepdims=True)
    return out


@dataclass
class SoftmaxHead:
    """``p = softmax(x W + b)``; trained on standardised inputs, stored in raw input space so
    that heads of peers with different data can be averaged weight by weight."""

    classes: list[str]
    weights: Array  # (dim, classes)
    bias: Array  # (classes,)

    @classmethod
    def fit(
        cls,
        x: Array,
        labels: list[str],
        classes: list[str],
        *,
        epochs: int = 300,
        lr: float = 0.5,
        l2: float = 1e-3,
    ) -> SoftmaxHead:
        """Cross-entropy by gradient descent: W -= lr * (X^T (softmax(XW + b) - Y) / n + l2 W)."""
        x = np.asarray(x, dtype=np.float64)
        mean = x.mean(axis=0)
        scale = x.std(axis=0) + 1e-6
        xs = (x - mean) / scale
        y = np.zeros((len(labels), len(classes)))
        y[np.arange(len(labels)), [classes.index(lb) for lb in labels]] = 1.0
        w = np.zeros((x.shape[1], len(classes)))
        b = np.zeros(len(classes))
        n = len(labels)
        for _ in range(epochs):
            grad = softmax(xs @ w + b) - y
            w -= lr * (xs.T @ grad / n + l2 * w)
            b -= lr * grad.mean(axis=0)
        # fold the standardisation in: (x - m) / s @ w + b == x @ (w / s) + (b - (m / s) @ w)
        raw_w = w / scale[:, None]
        return cls(list(classes), raw_w, b - mean @ raw_w)

    def proba(self, x: Array) -> Array:
        return softmax(np.asarray(x, dtype=np.float64) @ self.weights + self.bias)

    def predict(self, x: Array) -> list[str]:
        return [self.classes[i] for i in self.proba(x).argmax(axis=-1)]

    def accuracy(self, x: Array, labels: list[str]) -> float:
        predicted = self.predict(x)
        return sum(p == t for p, t in zip(predicted, labels, strict=True)) / max(1, len(labels))

    def to_json(self) -> str:
        return json.dumps(
            {
                "classes": self.classes,
                "weights": np.round(self.weights, 7).tolist(),
                "bias": np.round(self.bias, 7).tolist(),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> SoftmaxHead:
        data: dict[str, Any] = json.loads(text)
        return cls(
            list(data["classes"]),
            np.array(data["weights"], dtype=np.float64),
            np.array(data["bias"], dtype=np.float64),
        )
