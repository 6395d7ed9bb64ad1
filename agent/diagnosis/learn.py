"""What the agent and the benchmark both need to train and gate the diagnose engines: the
labelled digests (``config/diagnose/{train,gate}.jsonl``, written by
``python -m agent.bench.diagcorpus``), the split between them, the embeddings cached on disk,
the heads trained per quantity and the gate's verdict per quantity."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.diagnosis.engine import (
    FAULTY_P,
    OK_CLASS,
    Pick,
    Vector,
    pick,
    scores,
    train_head,
    weighted,
)
from agent.errors import AgentError
from agent.policy.head import SoftmaxHead

log = logging.getLogger(__name__)

CORPUS = Path(__file__).resolve().parents[2] / "config" / "diagnose"
ANSWER = 400  # windows a person's answer weighs as much as (weight 20 after the square root)


@dataclass(frozen=True, slots=True)
class Row:
    """One digest of a simulated trace, with its label and the detectors' verdict on it."""

    kind: str | None  # the trace's fault (None: healthy)
    seed: int
    size: float
    quantity: str
    digest: str
    label: str
    statistical: str
    count: int


def load(path: Path) -> list[Row]:
    try:
        lines = path.read_text().splitlines()
        return [Row(**json.loads(line)) for line in lines if line.strip()]
    except (OSError, ValueError, TypeError) as exc:
        raise AgentError(f"cannot read the diagnosis corpus {path}: {exc}") from None


def overlap(train: Iterable[Row], held_out: Iterable[Row]) -> list[str]:
    """What the held-out set shares with the training set: seeds, and fault sizes of a kind
    (a kind with a single size, such as a unit change, has none to hold out)."""
    train, held_out = list(train), list(held_out)
    seeds = {r.seed for r in train} & {r.seed for r in held_out}
    out = [f"seed {s}" for s in sorted(seeds)]
    for kind in sorted({r.kind for r in held_out if r.kind is not None}):
        trained = {r.size for r in train if r.kind == kind}
        if len(trained | {r.size for r in held_out if r.kind == kind}) > 1:
            out += [f"{kind} size {s:g}" for s in sorted(trained & {r.size for r in held_out
                                                                    if r.kind == kind})]
    return out


class VectorCache:
    """Embeddings of digests, by text, kept in one ``.npz`` per model."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.vectors: dict[str, Vector] = {}
        self.dirty = False
        if path is not None and path.exists():
            try:
                with np.load(path, allow_pickle=False) as data:
                    self.vectors = dict(zip(data["texts"].tolist(), data["vectors"],
                                            strict=True))
            except (OSError, ValueError, KeyError) as exc:
                log.warning("diagnosis: ignoring the embedding cache %s (%s)", path, exc)

    def get(self, texts: Iterable[str], embed: Callable[[str], Vector]) -> dict[str, Vector]:
        out = {}
        for text in texts:
            if text not in self.vectors:
                self.vectors[text] = np.asarray(embed(text), dtype=np.float32)
                self.dirty = True
            out[text] = self.vectors[text]
        return out

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp.npz")
        texts = list(self.vectors)
        np.savez(tmp, texts=np.array(texts), vectors=np.array([self.vectors[t] for t in texts]))
        tmp.replace(self.path)
        self.dirty = False


def quantities(rows: Iterable[Row]) -> list[str]:
    """The quantities with a fault in the rows: only those can have a head."""
    return sorted({r.quantity for r in rows if r.label != OK_CLASS})


def train(rows: Sequence[Row], quantity: str, extra: Sequence[tuple[str, str]],
          vectors: Callable[[Iterable[str]], dict[str, Vector]]) -> SoftmaxHead | None:
    """The head of one quantity on its training rows plus people's labels ``extra`` (digest,
    label), each of those weighing as much as ``ANSWER`` windows."""
    mine = [(r.digest, r.label, r.count) for r in rows if r.quantity == quantity]
    mine += [(text, label, ANSWER) for text, label in extra]
    return train_head(vectors({t for t, _, _ in mine}), mine)


def member_data(rows: Sequence[Row], quantity: str, extra: Sequence[tuple[str, str]],
                held: Sequence[Row], vectors: Callable[[Iterable[str]], dict[str, Vector]]
                ) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    """A member's data for a federated diagnose head of ``quantity``: its training windows and
    people's answers, and held-out windows, embedded and weighted as :func:`train` weighs
    them. Only the head's parameters ever leave the member."""
    def expand(items: Iterable[tuple[str, str, int]]) -> tuple[np.ndarray, list[str]]:
        items = weighted(items)
        got = vectors({t for t, _, _ in items})
        texts = [t for t, _, n in items for _ in range(n)]
        labels = [lb for _, lb, n in items for _ in range(n)]
        return np.array([got[t] for t in texts], dtype=np.float64), labels

    x, y = expand([(r.digest, r.label, r.count) for r in rows if r.quantity == quantity]
                  + [(t, lb, ANSWER) for t, lb in extra])
    hx, hy = expand((r.digest, r.label, r.count) for r in held if r.quantity == quantity)
    return x, y, hx, hy


def decided(classes: Sequence[str], probs: Sequence[float]) -> str:
    """What the engine reports as faulty: a fault only at ``FAULTY_P`` or more, as in the agent."""
    best = max(range(len(classes)), key=lambda i: probs[i])
    return classes[best] if probs[best] >= FAULTY_P else OK_CLASS


def gate(head: SoftmaxHead, rows: Sequence[Row], quantity: str,
         vectors: Callable[[Iterable[str]], dict[str, Vector]]) -> Pick:
    """Model against detectors on the held-out windows of ``quantity`` (each counted as often
    as it occurred), per fault kind and on the healthy windows."""
    mine = [r for r in rows if r.quantity == quantity]
    got = vectors({r.digest for r in mine})
    texts = sorted(got)
    probs = head.proba(np.array([got[t] for t in texts], dtype=np.float64))
    predicted = {t: decided(head.classes, p) for t, p in zip(texts, probs, strict=True)}
    labels, stat, model = [], [], []
    for r in mine:
        labels += [r.label] * r.count
        stat += [r.statistical] * r.count
        model += [predicted[r.digest]] * r.count
    return pick(scores(labels, stat), scores(labels, model))
