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
from collections import OrderedDict, deque
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
VOTES = 5  # recent verdicts of a series that decide its fault


@dataclass
class DiagnoseEngine:
    """One quantity's head; ``classify`` a digest into (fault or "ok", probability). It judges
    the fault ``kinds`` the gate gave it; the statistical detectors judge the others."""

    quantity: str
    head: SoftmaxHead
    embed: Callable[[str], Vector] | None = None
    kinds: frozenset[str] = frozenset(SENSOR_FAULTS)  # the faults it judges (the gate's pick)
    name: str = "model"
    cache: OrderedDict[str, dict[str, float]] = field(default_factory=OrderedDict)
    wanted: OrderedDict[str, None] = field(default_factory=OrderedDict)
    last_want: dict[str, float] = field(default_factory=dict)
    votes: dict[str, deque[str]] = field(default_factory=dict)  # series -> recent verdicts
    reported: dict[str, str] = field(default_factory=dict)  # series -> the fault it reports
    embedded: int = 0

    def fresh(self) -> DiagnoseEngine:
        """The same head and cache for another set of series (no verdicts carried over)."""
        return DiagnoseEngine(self.quantity, self.head, self.embed, self.kinds, self.name,
                              self.cache, self.wanted)

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
        return self.steady(key, best if got[best] >= FAULTY_P else OK_CLASS, got[best])

    def steady(self, key: str, verdict: str, p: float) -> tuple[str, float]:
        """The series' fault over its last ``VOTES`` verdicts: a kind takes over with a
        majority of them and is kept while it has two, so one odd window neither raises an
        alarm nor turns a fault into another (each change would be a new alarm)."""
        votes = self.votes.setdefault(key, deque(maxlen=VOTES))
        votes.append(verdict)
        counts = {k: sum(v == k for v in votes) for k in set(votes) if k != OK_CLASS}
        current = self.reported.get(key)
        if current is None or counts.get(current, 0) < 2:
            top = max(counts, key=lambda k: counts[k], default=None)
            current = top if top is not None and counts[top] > VOTES // 2 else None
        if current is None:
            self.reported.pop(key, None)
            return OK_CLASS, 1.0 - p if verdict != OK_CLASS else p
        self.reported[key] = current
        return current, max(p, FAULTY_P) if verdict == current else FAULTY_P

    def fill(self, embed: Callable[[str], Vector], limit: int = 8) -> int:
        """Embed up to ``limit`` wanted digests (the caller's worker, no lock held)."""
        done = 0
        while self.wanted and done < limit:
            text, _ = self.wanted.popitem(last=False)
            if text not in self.cache:
                self.learn(text, embed(text))
                done += 1
        return done


def weighted(rows: Iterable[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """Each distinct (digest, label) once, weighted by the square root of how often it occurred:
    a long healthy day does not drown the faults, and a digest seen under two labels still
    leans to the one seen more often."""
    total: dict[tuple[str, str], int] = {}
    for text, label, count in rows:
        total[(text, label)] = total.get((text, label), 0) + max(1, count)
    return [(t, lb, math.ceil(math.sqrt(n))) for (t, lb), n in sorted(total.items())]


def train_head(vectors: Mapping[str, Vector], rows: Iterable[tuple[str, str, int]]
               ) -> SoftmaxHead | None:
    """A head on ``(digest, label, count)`` rows (:func:`weighted`), each digest's vector from
    ``vectors``. None when the rows hold fewer than two classes."""
    texts: list[str] = []
    labels: list[str] = []
    for text, label, weight in weighted(rows):
        texts += [text] * weight
        labels += [label] * weight
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
    delay: float | None = None  # median seconds to detect, where known

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
    """The gate's verdict for one quantity: which engine judges each fault kind."""

    kinds: dict[str, str]  # fault kind -> "model" or "statistical"
    statistical: dict[str, KindScore]
    model: dict[str, KindScore]

    @property
    def engine(self) -> str:
        """"model" if the model judges any kind, else "statistical"."""
        return "model" if self.model_kinds else "statistical"

    @property
    def model_kinds(self) -> frozenset[str]:
        return frozenset(k for k, e in self.kinds.items() if e == "model")

    @property
    def reason(self) -> str:
        if not self.model_kinds:
            return "the model is better on no kind"
        return f"the model is better on {', '.join(sorted(self.model_kinds))}"

    def status(self) -> dict[str, object]:
        return {
            "engine": self.engine,
            "kinds": dict(self.kinds),
            "statistical": {k: round(s.score, 4) for k, s in self.statistical.items()},
            "model": {k: round(s.score, 4) for k, s in self.model.items()},
        }


FASTER = 0.5  # a tie goes to the model only if it detects in at most half the time


def better(model: KindScore, statistical: KindScore) -> bool:
    """A higher score, or the same score and detected in at most ``FASTER`` of the time."""
    if model.score > statistical.score + 1e-9:
        return True
    same = abs(model.score - statistical.score) <= 1e-9
    return same and model.delay is not None and statistical.delay is not None and (
        model.delay <= FASTER * statistical.delay)


def pick(statistical: dict[str, KindScore], model: dict[str, KindScore]) -> Pick:
    """Per fault kind, the model only where it scores better than the statistical detectors
    (precision counts its false alarms of that kind, on healthy windows too) and it raises no
    more false alarms on healthy windows overall; a tie keeps the detectors (cheaper, and the
    baseline) unless the model detects at least twice as fast. So the picked engine is never
    worse than the detectors on any kind."""
    healthy_ok = model.get(OK_CLASS, KindScore(1.0, 1.0, 0)).score >= \
        statistical.get(OK_CLASS, KindScore(1.0, 1.0, 0)).score - 1e-9
    kinds = {}
    for kind in SENSOR_FAULTS:
        s, m = statistical.get(kind), model.get(kind)
        kinds[kind] = "model" if s is not None and m is not None and healthy_ok and (
            better(m, s)) else "statistical"
    return Pick(kinds, statistical, model)
