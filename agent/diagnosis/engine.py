"""The model's ``diagnose`` engine for one series kind (a quantity): the digest of a series'
window features (:mod:`.digest`), its embedding by the model, and a softmax head over the
sensor faults -- the decisions' digest -> embedding -> head pattern, with their
:class:`~agent.policy.head.SoftmaxHead`.

Embedding costs about half a second on a Pi, so an engine never embeds in the check itself
unless told to (``embed`` given: the benchmark); the agent gives none, and a digest it has not
seen is only *wanted*: a worker embeds it off the lock (:meth:`DiagnoseEngine.fill`) and the
statistical findings stand for that check. A digest is wanted at once when the statistical
detectors found something on the series, otherwise at most every ``EMBED_EVERY`` seconds per
series. Digests are coarse, so after a few hours nearly every check is a cache hit.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from agent.policy.head import SoftmaxHead

Vector = npt.NDArray[np.floating]
OK_CLASS = "ok"
SENSOR_FAULTS = ("silent", "stuck", "drift", "spiky", "noisy", "out_of_range", "wrong_unit")
CLASSES = (OK_CLASS, *SENSOR_FAULTS)
EMBED_EVERY = 900.0  # seconds between embeddings of a quiet series' unseen digest
FAULTY_P, SUSPECT_P = 0.8, 0.5  # head probability of a fault for faulty / suspect
CACHE = 4096  # digests whose probabilities are kept


@dataclass
class DiagnoseEngine:
    """One quantity's head; ``classify`` a digest into (fault or "ok", probability)."""

    quantity: str
    head: SoftmaxHead
    embed: Callable[[str], Vector] | None = None
    name: str = "model"
    cache: OrderedDict[str, dict[str, float]] = field(default_factory=OrderedDict)
    wanted: OrderedDict[str, None] = field(default_factory=OrderedDict)
    last_want: dict[str, float] = field(default_factory=dict)
    embedded: int = 0

    def proba(self, text: str) -> dict[str, float] | None:
        got = self.cache.get(text)
        if got is not None:
            self.cache.move_to_end(text)
            return got
        if self.embed is None:
            return None
        return self.learn(text, self.embed(text))

    def learn(self, text: str, vector: Vector) -> dict[str, float]:
        probs = self.head.proba(np.asarray(vector, dtype=np.float64)[None, :])[0]
        got = {c: float(p) for c, p in zip(self.head.classes, probs, strict=True)}
        self.embedded += 1
        self.cache[text] = got
        while len(self.cache) > CACHE:
            self.cache.popitem(last=False)
        return got

    def classify(self, key: str, text: str, now: float, urgent: bool
                 ) -> tuple[str, float] | None:
        """The head's best class for ``text``; None while it is not embedded yet (then it is
        wanted if ``urgent`` or the series' last want is ``EMBED_EVERY`` old)."""
        got = self.proba(text)
        if got is None:
            if urgent or now - self.last_want.get(key, -math.inf) >= EMBED_EVERY:
                self.last_want[key] = now
                self.wanted[text] = None
                while len(self.wanted) > 64:
                    self.wanted.popitem(last=False)
            return None
        best = max(got, key=lambda c: got[c])
        return best, got[best]

    def fill(self, embed: Callable[[str], Vector], limit: int = 8) -> int:
        """Embed up to ``limit`` wanted digests (the caller's worker, no lock held)."""
        done = 0
        while self.wanted and done < limit:
            text, _ = self.wanted.popitem(last=False)
            if text not in self.cache:
                self.learn(text, embed(text))
                done += 1
        return done


def train_head(vectors: Mapping[str, Vector], rows: Iterable[tuple[str, str, int]],
               cap: int = 20) -> SoftmaxHead | None:
    """A head on ``(digest, label, count)`` rows, each digest's vector from ``vectors``; a row
    counts ``min(count, cap)`` times, so a long healthy day does not drown the faults. None
    when the rows hold fewer than two classes."""
    texts: list[str] = []
    labels: list[str] = []
    for text, label, count in rows:
        texts += [text] * min(max(1, count), cap)
        labels += [label] * min(max(1, count), cap)
    classes = [c for c in CLASSES if c in set(labels)]
    if len(classes) < 2:
        return None
    x = np.array([vectors[t] for t in texts], dtype=np.float64)
    return SoftmaxHead.fit(x, labels, classes, epochs=400)


# -- the fitness gate --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KindScore:
    precision: float
    recall: float
    cases: int

    @property
    def score(self) -> float:
        """The worse of precision and recall (a kind never predicted nor present scores 1)."""
        return min(self.precision, self.recall)


def scores(labels: Sequence[str], predicted: Sequence[str],
           kinds: Sequence[str] = SENSOR_FAULTS) -> dict[str, KindScore]:
    """Per fault kind present in ``labels``: precision and recall of ``predicted``."""
    out = {}
    for kind in kinds:
        cases = sum(lb == kind for lb in labels)
        alarms = sum(p == kind for p in predicted)
        right = sum(lb == p == kind for lb, p in zip(labels, predicted, strict=True))
        if not cases:
            continue
        out[kind] = KindScore(right / alarms if alarms else 1.0 if not right else 0.0,
                              right / cases, cases)
    healthy = sum(lb == OK_CLASS for lb in labels)
    false = sum(lb == OK_CLASS and p != OK_CLASS for lb, p in zip(labels, predicted, strict=True))
    if healthy:  # the healthy windows: a false alarm is a missed "ok"
        out[OK_CLASS] = KindScore(1.0, 1 - false / healthy, healthy)
    return out


@dataclass(frozen=True, slots=True)
class Pick:
    engine: str  # "model" or "statistical"
    reason: str
    statistical: dict[str, KindScore]
    model: dict[str, KindScore]

    def status(self) -> dict[str, object]:
        return {
            "engine": self.engine,
            "reason": self.reason,
            "statistical": {k: round(s.score, 4) for k, s in self.statistical.items()},
            "model": {k: round(s.score, 4) for k, s in self.model.items()},
        }


def pick(statistical: dict[str, KindScore], model: dict[str, KindScore]) -> Pick:
    """The model only if it is no worse than the statistical detectors on every kind and better
    on the whole; otherwise the statistical detectors (cheaper, and the baseline)."""
    worse = [k for k, s in statistical.items()
             if model.get(k, KindScore(0.0, 0.0, 0)).score < s.score - 1e-9]
    if worse:
        return Pick("statistical", f"the model is worse on {', '.join(worse)}", statistical,
                    model)
    gain = sum(model[k].score - s.score for k, s in statistical.items())
    if gain <= 1e-9:
        return Pick("statistical", "the model is no better", statistical, model)
    return Pick("model", f"better by {gain:.3f} over {len(statistical)} kinds", statistical,
                model)
