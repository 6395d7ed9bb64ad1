"""The diagnose engines in the running agent: a head per quantity trained on the labelled
digests of simulated faults (``config/diagnose/train.jsonl``) plus people's answers stored in
SQLite, gated per fault kind against the statistical detectors on whole held-out series
(``gate-sequences.json``), and installed in the health service for the kinds the gate gave it.

Runs off the start-up path once the model is ready (every digest's embedding is cached in
``data_dir/diagnose``, so a restart embeds nothing again), again every hour when people gave
new answers, and embeds the digests the engines want on the scheduler, never under the health
lock.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from agent.diagnosis import learn
from agent.diagnosis.engine import DiagnoseEngine, KindScore, Pick, Vector
from agent.errors import AgentError
from agent.policy.head import SoftmaxHead
from agent.service.health import HealthService
from agent.storage import Store

log = logging.getLogger(__name__)


class DiagnoseLearning:
    def __init__(self, health: HealthService, embed: Callable[[str], Vector],
                 model_sha256: str, data_dir: Path, store: Store,
                 on_db: Callable[[Callable[[], Any]], Future[Any]],
                 corpus: Path = learn.CORPUS) -> None:
        self.health = health
        self.embed = embed
        self.cache = learn.VectorCache(data_dir / "diagnose" / f"vectors-{model_sha256[:16]}.npz")
        self.store = store
        self.on_db = on_db
        self.corpus = corpus
        self.labels_used: int | None = None
        self.stopping = False
        # what the last prepare() trained and the gate said, per quantity: the federation's
        # starting point and what a federated head must not be worse than
        self.heads: dict[str, SoftmaxHead] = {}
        self.picks: dict[str, Pick] = {}
        self.ready = threading.Event()
        self.install_lock = threading.Lock()

    def vectors(self, texts: Iterable[str]) -> dict[str, Vector]:
        try:
            return self.cache.get(texts, self.embed)
        finally:
            self.cache.save()

    def labels(self) -> list[tuple[str, str, str]]:
        """(quantity, digest, label) of people's answers; [] for now if the database is busy."""
        try:
            got: list[tuple[str, str, str]] = self.on_db(self.store.diagnosis_labels).result(
                timeout=120)
            return got
        except concurrent.futures.TimeoutError:
            return []

    def prepare(self) -> None:
        """Train, gate and install the engines (slow: minutes at the first start on a Pi)."""
        started = time.monotonic()
        train = learn.load(self.corpus / "train.jsonl")
        held = learn.load(self.corpus / "gate.jsonl")
        sequences = learn.load_sequences(self.corpus / "gate-sequences.json")
        shared = learn.overlap(train, held)
        if shared:
            raise AgentError(f"the diagnosis gate's traces share {', '.join(shared)} with "
                             f"training; keeping the statistical detectors")
        labels = self.labels()
        engines: dict[str, DiagnoseEngine] = {}
        gates: dict[str, dict[str, Any]] = {}
        for quantity in learn.quantities(train):
            if self.stopping:
                return
            extra = [(d, lb) for q, d, lb in labels if q == quantity]
            head = learn.train(train, quantity, extra, self.vectors)
            if head is None:
                continue
            verdict = learn.trace_gate(head, sequences, quantity, self.vectors)
            gates[quantity] = {**verdict.status(), "labels": len(extra)}
            self.heads[quantity], self.picks[quantity] = head, verdict
            if verdict.model_kinds:
                engines[quantity] = DiagnoseEngine(quantity, head, kinds=verdict.model_kinds)
            log.info("diagnosis %s: %s engine (%s)", quantity, verdict.engine, verdict.reason)
        with self.install_lock:
            self.health.install(engines, gates)
        self.labels_used = len(labels)
        self.ready.set()
        log.info("diagnose engines ready in %.0fs: %s", time.monotonic() - started,
                 {q: g["engine"] for q, g in gates.items()})

    def retrain(self) -> None:
        """Again, if people answered since the last time."""
        if self.labels_used is not None and len(self.labels()) != self.labels_used:
            self.prepare()

    def fill(self) -> None:
        """Embed the digests the engines want (the scheduler, every few seconds)."""
        self.health.fill(self.embed)

    # -- federated learning of the heads (agent.service.federation) ----------------------------

    def federation_data(self, quantity: str
                        ) -> tuple[np.ndarray, list[str], np.ndarray, list[str], SoftmaxHead]:
        """This member's embedded training windows and answers, its held-out windows and its
        own head of ``quantity`` (after prepare()); they never leave the device."""
        head = self.heads.get(quantity)
        if head is None:
            raise AgentError(f"no diagnose head of {quantity} (not in the corpus, or the "
                             f"engines are not prepared)")
        train = learn.load(self.corpus / "train.jsonl")
        held = learn.load(self.corpus / "gate.jsonl")
        extra = [(d, lb) for q, d, lb in self.labels() if q == quantity]
        x, y, hx, hy = learn.member_data(train, quantity, extra, held, self.vectors)
        return x, y, hx, hy, head

    def install_federated(self, quantity: str, head: SoftmaxHead, source: str
                          ) -> tuple[bool, str]:
        """Gate a federated head of ``quantity`` on this member's own held-out series and install
        it only if it is no worse, on any fault kind, than what judges that kind now.
        Returns (installed, why)."""
        current = self.picks.get(quantity)
        if current is None:
            return False, "no gate verdict of this member to compare with"
        sequences = learn.load_sequences(self.corpus / "gate-sequences.json")
        verdict = learn.trace_gate(head, sequences, quantity, self.vectors)
        worse = [k for k in sorted(current.kinds)
                 if effective(verdict, k).score < effective(current, k).score - 1e-9]
        if worse:
            return False, f"worse than the installed engine on {', '.join(worse)}"
        with self.install_lock:
            with self.health.lock:
                engines = dict(self.health.diagnoser.engines)
                gates = dict(self.health.gates)
            if verdict.model_kinds:
                engines[quantity] = DiagnoseEngine(quantity, head, kinds=verdict.model_kinds)
            else:
                engines.pop(quantity, None)
            gates[quantity] = {**gates.get(quantity, {}), **verdict.status(), "source": source}
            self.health.install(engines, gates)
            self.heads[quantity], self.picks[quantity] = head, verdict
        return True, f"no worse on any kind; {verdict.reason}"


def effective(verdict: Pick, kind: str) -> KindScore:
    """The score of the engine the gate gave ``kind`` to."""
    scores = verdict.model if verdict.kinds.get(kind) == "model" else verdict.statistical
    return scores.get(kind, KindScore(0.0, 0.0, 0))
