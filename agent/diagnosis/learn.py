"""What the agent and the benchmark both need to train and gate the diagnose engines: the
labelled digests (``config/diagnose/{train,gate}.jsonl``, written by
``python -m agent.bench.diagcorpus``), the split between them, the embeddings cached on disk,
the heads trained per quantity and the gate's verdict per quantity."""

from __future__ import annotations

import json
import logging
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.diagnosis.engine import (
    FAULTY_P,
    OK_CLASS,
    DiagnoseEngine,
    KindScore,
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


# -- the gate on whole traces ------------------------------------------------------------------

CLEAR_CHECKS = 3  # as the diagnoser's trackers: a fault clears after this many clean checks
GRACE = 3600.0  # an alarm this long after a fault ended still names it


@dataclass(frozen=True, slots=True)
class Sequences:
    """Held-out series check by check (``gate-sequences.json``): each run is (checks, digest
    index, the detectors' verdict)."""

    check_every: float
    digests: list[str]
    series: list[dict[str, Any]]


def load_sequences(path: Path) -> Sequences:
    try:
        data = json.loads(path.read_text())
        return Sequences(float(data["check_every"]), list(data["digests"]),
                         list(data["series"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AgentError(f"cannot read the diagnosis sequences {path}: {exc}") from None


def alarms(verdicts: Iterable[tuple[float, str]]) -> list[tuple[float, str]]:
    """The alarms a run of per-check verdicts raises, as a tracker raises them: a fault at
    once, a change of fault is a new alarm, ok only after ``CLEAR_CHECKS`` clean checks."""
    out: list[tuple[float, str]] = []
    state: str | None = None
    clean = 0
    for t, verdict in verdicts:
        if verdict == OK_CLASS:
            clean += 1
            if state is not None and clean >= CLEAR_CHECKS:
                state = None
            continue
        clean = 0
        if verdict != state:
            out.append((t, verdict))
            state = verdict
    return out


def trace_scores(seqs: Sequences, verdicts: Callable[[dict[str, Any]], list[str]]
                 ) -> dict[str, KindScore]:
    """Per fault kind over whole held-out series, as bench diagnose counts: recall (the faulty
    series got an alarm of its fault between onset and an hour after the end) and precision
    (alarms of the kind that were right, on any series); "ok": series of healthy traces
    without a false alarm."""
    traces: dict[str, int] = {}
    found: dict[str, int] = {}
    raised: dict[str, int] = {}
    right: dict[str, int] = {}
    delays: dict[str, list[float]] = {}
    healthy = quiet = 0
    for seq in seqs.series:
        times = [seq["start"] + i * seqs.check_every for i in range(sum(r[0] for r in
                                                                         seq["runs"]))]
        got = alarms(zip(times, verdicts(seq), strict=True))
        mine = seq["fault_key"] == seq["key"]
        kind = seq["kind"]
        if kind is None:
            healthy += 1
            quiet += not got
        hits = [a for a in got if mine and a[1] == kind
                and seq["onset"] <= a[0] <= seq["end"] + GRACE]
        if mine:
            traces[kind] = traces.get(kind, 0) + 1
            found[kind] = found.get(kind, 0) + bool(hits)
            if hits:
                delays.setdefault(kind, []).append(hits[0][0] - seq["onset"])
        for a in got:
            raised[a[1]] = raised.get(a[1], 0) + 1
            right[a[1]] = right.get(a[1], 0) + (a in hits)
    out = {k: KindScore(right.get(k, 0) / raised[k] if raised.get(k) else 1.0,
                        found.get(k, 0) / n, n,
                        statistics.median(delays[k]) if delays.get(k) else None)
           for k, n in traces.items()}
    if healthy:
        out[OK_CLASS] = KindScore(1.0, quiet / healthy, healthy)
    return out


def trace_gate(head: SoftmaxHead, seqs: Sequences, quantity: str,
               vectors: Callable[[Iterable[str]], dict[str, Vector]]) -> Pick:
    """The gate on whole held-out series of ``quantity``: the detectors' verdicts against the
    engine's (with its smoothing), through the trackers' alarm rule, per fault kind."""
    mine = Sequences(seqs.check_every, seqs.digests,
                     [s for s in seqs.series if s["key"].endswith(f"/{quantity}")])
    used = sorted({run[1] for s in mine.series for run in s["runs"]})
    got = vectors(seqs.digests[i] for i in used)
    engine = DiagnoseEngine(quantity, head)
    for i in used:
        engine.learn(seqs.digests[i], got[seqs.digests[i]])

    def statistical(seq: dict[str, Any]) -> list[str]:
        return [stat for n, _, stat in seq["runs"] for _ in range(n)]

    def model(seq: dict[str, Any]) -> list[str]:
        judge = engine.fresh()
        out = []
        for n, index, _ in seq["runs"]:
            for _ in range(n):
                verdict = judge.classify(seq["key"], seqs.digests[index], 0.0, False)
                out.append(OK_CLASS if verdict is None else verdict[0])
        return out

    return pick(trace_scores(mine, statistical), trace_scores(mine, model))
