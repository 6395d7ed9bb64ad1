"""The diagnose engines as bench diagnose runs them: the bundled model on one thread, a head per
quantity trained on ``config/diagnose/train.jsonl``, the gate on ``gate-sequences.json``
(held-out seeds and sizes), and every embedding cached in ``~/.cache/edge-agent``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from agent.diagnosis import learn
from agent.diagnosis.engine import DiagnoseEngine, KindScore, Vector
from agent.errors import AgentError
from agent.inference.locate import locate
from agent.inference.model import Model

CACHE_DIR = Path.home() / ".cache" / "edge-agent"


def delays(stat: KindScore, model: KindScore) -> str:
    if stat.delay is None or model.delay is None:
        return ""
    return f" ({stat.delay / 60:.0f}/{model.delay / 60:.0f} min)"


def prepare(echo: Callable[[str], None], corpus: Path = learn.CORPUS,
            first_seed: int = 900_000) -> tuple[dict[str, DiagnoseEngine],
                                                dict[str, DiagnoseEngine]]:
    """(an engine per quantity with a head, the ones the gate picked)."""
    train, held = learn.load(corpus / "train.jsonl"), learn.load(corpus / "gate.jsonl")
    sequences = learn.load_sequences(corpus / "gate-sequences.json")
    shared = learn.overlap(train, held)
    if shared or any(r.seed >= first_seed for r in train + held):
        raise AgentError(f"the gate's traces share {', '.join(shared) or 'bench seeds'} "
                         f"with training")
    found = locate("bundled:smollm2-135m")
    model = Model(found.path, threads=1, context=512, sha256=found.sha256)
    cache = learn.VectorCache(CACHE_DIR / f"diagnose-{found.sha256[:16]}.npz")

    def vectors(texts: Iterable[str]) -> dict[str, Vector]:
        got = cache.get(texts, model.embed)
        cache.save()
        return got

    def embed(text: str) -> Vector:
        return vectors([text])[text]

    engines, picked = {}, {}
    for quantity in learn.quantities(train):
        head = learn.train(train, quantity, [], vectors)
        if head is None:
            continue
        engines[quantity] = DiagnoseEngine(quantity, head, embed)
        verdict = learn.trace_gate(head, sequences, quantity, vectors)
        echo(f"gate {quantity} (held-out series, min(precision, recall) statistical/model): "
             + ", ".join(f"{k} {verdict.statistical[k].score:.3f}/{verdict.model[k].score:.3f}"
                         f"{delays(verdict.statistical[k], verdict.model[k])}"
                         f"->{'model' if k in verdict.model_kinds else 'stat'}"
                         for k in verdict.statistical if k in verdict.model and k != "ok")
             + f"; healthy series without a false alarm {verdict.statistical['ok'].score:.3f}/"
             f"{verdict.model['ok'].score:.3f}")
        if verdict.model_kinds:
            picked[quantity] = DiagnoseEngine(quantity, head, embed, verdict.model_kinds)
    return engines, picked
