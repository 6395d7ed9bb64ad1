"""The diagnose engine: the digest of a series' window, the split between training and held-out
traces, the gate per quantity (with the real model's embeddings), the engine inside the
diagnoser (embedding off the check), and a dismissed fault."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.bench.diagnose import held_out_plan
from agent.diagnosis import learn
from agent.diagnosis.digest import digest, features
from agent.diagnosis.engine import DiagnoseEngine, KindScore, Vector, better, pick
from agent.diagnosis.fleet import Diagnoser
from agent.diagnosis.series import SeriesMonitor
from agent.diagnosis.verdict import FAULTY, OK
from agent.inference.model import Model
from agent.policy.head import SoftmaxHead
from firmware_sim.traces import SIZES
from tests.helpers import bundled


def feed(monitor: SeriesMonitor, values: Iterable[float], start: float = 0.0) -> float:
    t = start
    for v in values:
        t += 60
        monitor.observe(t, v)
    return t


def test_the_digest_is_the_same_text_for_the_same_window_and_says_stuck() -> None:
    rng = random.Random(3)
    noisy = [round(21 + rng.gauss(0, 0.1), 2) for _ in range(120)]
    texts = []
    for _ in range(2):
        m = SeriesMonitor("a-1", "temperature")
        t = feed(m, noisy)
        m.findings(t + 1)
        texts.append(digest(features(m, t + 1)))
    assert texts[0] == texts[1]
    assert "Repeats: changing" in texts[0] and "Last reading: just now" in texts[0]
    t = feed(m, [21.37] * 15, t)
    m.findings(t + 1)
    assert "many identical readings, very rare for it" in digest(features(m, t + 1))
    m.findings(t + 3600)
    assert "Last reading: very late" in digest(features(m, t + 3600))


def test_no_training_seed_or_size_is_ever_evaluated() -> None:
    train = learn.load(learn.CORPUS / "train.jsonl")
    gate = learn.load(learn.CORPUS / "gate.jsonl")
    assert train and gate and learn.overlap(train, gate) == []
    bench = held_out_plan(seeds=20, healthy=30)
    trained_seeds = {r.seed for r in train}
    assert not trained_seeds & {seed for _, seed, _ in bench}
    assert not trained_seeds & {r.seed for r in gate}
    for kind, _, size in bench:
        if kind is not None and len(set(SIZES[kind][0]) | set(SIZES[kind][1])) > 1:
            assert size not in {r.size for r in train if r.kind == kind}, (kind, size)
    # the check itself finds what is shared
    leak = [*gate, learn.Row("stuck", train[0].seed, SIZES["stuck"][0][0], "temperature", "x",
                             "stuck", "ok", 1)]
    assert learn.overlap(train, leak) == [f"seed {train[0].seed}",
                                          f"stuck size {SIZES['stuck'][0][0]:g}"]


def score(value: float) -> KindScore:
    return KindScore(value, value, 10)


def test_the_gate_gives_the_model_only_the_kinds_it_is_better_at() -> None:
    stat = {"stuck": score(1.0), "noisy": score(0.9), "spiky": score(0.5), "ok": score(1.0)}
    got = pick(stat, {"stuck": score(0.99), "noisy": score(0.95), "spiky": score(0.5),
                      "ok": score(1.0)})
    assert got.model_kinds == {"noisy"} and got.engine == "model"
    assert got.kinds["stuck"] == got.kinds["spiky"] == "statistical"  # worse; a tie
    louder = pick(stat, {"stuck": score(1.0), "noisy": score(1.0), "spiky": score(0.9),
                         "ok": score(0.999)})  # better everywhere but more false alarms
    assert louder.engine == "statistical" and not louder.model_kinds
    assert pick(stat, dict(stat)).engine == "statistical"
    slow = {"stuck": KindScore(1.0, 1.0, 5, 600.0), "ok": score(1.0)}
    assert pick(slow, {"stuck": KindScore(1.0, 1.0, 5, 300.0), "ok": score(1.0)}).model_kinds \
        == {"stuck"}  # as good and twice as fast
    assert not pick(slow, {"stuck": KindScore(1.0, 1.0, 5, 400.0), "ok": score(1.0)}).model_kinds


@pytest.fixture(scope="module")
def model() -> Iterable[Model]:
    found = bundled()
    yield Model(found.path, threads=1, context=512, sha256=found.sha256)


@pytest.fixture(scope="module")
def vectors(model: Model, tmp_path_factory: pytest.TempPathFactory) -> learn.VectorCache:
    return learn.VectorCache(tmp_path_factory.mktemp("vectors") / "v.npz")


def test_the_gate_on_held_out_traces_with_the_real_model(model: Model,
                                                         vectors: learn.VectorCache) -> None:
    train = learn.load(learn.CORPUS / "train.jsonl")
    gate = learn.load(learn.CORPUS / "gate.jsonl")

    def embed(texts: Iterable[str]) -> dict[str, Vector]:
        return vectors.get(texts, model.embed)

    head = learn.train(train, "temperature", [], embed)
    assert head is not None and "stuck" in head.classes and "ok" in head.classes
    verdict = learn.gate(head, gate, "temperature", embed)
    for kind in verdict.model_kinds:  # what it gives the model, the model does better
        assert verdict.model[kind].score > verdict.statistical[kind].score
    if verdict.model_kinds:
        assert verdict.model["ok"].score >= verdict.statistical["ok"].score
    # detectors that miss every stuck window: the same model now wins stuck
    blind = [learn.Row(r.kind, r.seed, r.size, r.quantity, r.digest, r.label,
                       "ok" if r.statistical == "stuck" else r.statistical, r.count)
             for r in gate]
    if verdict.model["stuck"].score > 0 and (
            verdict.model["ok"].score >= verdict.statistical["ok"].score):
        assert "stuck" in learn.gate(head, blind, "temperature", embed).model_kinds
    vectors.save()
    assert vectors.path is not None and learn.VectorCache(vectors.path).vectors.keys() == \
        vectors.vectors.keys()


def test_the_engine_in_the_diagnoser_embeds_off_the_check(model: Model,
                                                          vectors: learn.VectorCache) -> None:
    train = learn.load(learn.CORPUS / "train.jsonl")
    head = learn.train(train, "temperature", [],
                       lambda texts: vectors.get(texts, model.embed))
    assert head is not None
    engine = DiagnoseEngine("temperature", head)  # no embed: the agent's way
    diag = Diagnoser(start=0.0)
    diag.engines = {"temperature": engine}
    rng = random.Random(5)
    t = 0.0
    for i in range(120):
        t = 60.0 * i
        diag.reading("a-1", "temperature", t, round(21 + rng.gauss(0, 0.1), 2))
        diag.reading("a-1", "humidity", t, round(45 + rng.gauss(0, 0.5), 1))
        diag.check(t + 1)
        filled = engine.fill(lambda text: vectors.get([text], model.embed)[text])
        assert filled <= 8
    assert engine.embedded >= 1 and not engine.wanted  # a quiet series: a few digests only
    verdicts = []
    for i in range(120, 160):  # stuck
        t = 60.0 * i
        diag.reading("a-1", "temperature", t, 21.42)
        diag.reading("a-1", "humidity", t, round(45 + rng.gauss(0, 0.5), 1))
        diag.check(t + 1)
        engine.fill(lambda text: vectors.get([text], model.embed)[text])
        verdicts.append(engine.cache.get(diag.digests["a-1/temperature"]))
    assert any(v is not None and max(v, key=lambda c: v[c]) == "stuck" for v in verdicts)
    health = diag.health("sensor", "a-1/temperature")
    assert health is not None and health.state == FAULTY and health.fault == "stuck"


def test_a_dismissed_fault_stays_quiet_until_it_ends_and_then_can_come_back() -> None:
    diag = Diagnoser(start=0.0)
    rng = random.Random(9)
    t = 0.0

    def step(i: int, value: float) -> None:
        nonlocal t
        t = 60.0 * i
        diag.reading("a-1", "temperature", t, value)
        diag.reading("a-1", "humidity", t, round(45 + rng.gauss(0, 0.5), 1))
        diag.check(t + 1)

    for i in range(100):
        step(i, round(21 + rng.gauss(0, 0.1), 2))
    for i in range(100, 115):
        step(i, 21.5)
    assert diag.faulty("a-1/temperature") is not None
    before = diag.dismiss("a-1/temperature", t + 2)
    assert before is not None and before.fault == "stuck"
    for i in range(115, 130):  # still the same value: no alarm
        step(i, 21.5)
        health = diag.health("sensor", "a-1/temperature")
        assert health is not None and health.state == OK
    assert diag.dismissed == {"a-1/temperature": "stuck"}
    for i in range(130, 200):
        step(i, round(21 + rng.gauss(0, 0.1), 2))
    assert diag.dismissed == {}
    for i in range(200, 215):
        step(i, 21.7)
    again = diag.faulty("a-1/temperature")
    assert again is not None and again.fault == "stuck"


def test_people_s_labels_are_kept(tmp_path: Path) -> None:
    from agent.storage import Store

    store = Store(tmp_path / "x.db")
    store.diagnosis_label_add(1.0, "a-1", "temperature", "dismissed", "stuck", "ok", "d1", "cli")
    store.diagnosis_label_add(2.0, "a-1", "temperature", "confirmed", "stuck", "stuck", "d2",
                              "intent")
    store.diagnosis_label_add(3.0, "a-1", "humidity", "dismissed", None, "ok", "", "intent")
    assert store.diagnosis_labels() == [("temperature", "d1", "ok"),
                                        ("temperature", "d2", "stuck")]
    store.close()


def test_labels_move_the_head(model: Model, vectors: learn.VectorCache) -> None:
    """A person's answer is a training example: a digest the corpus calls a fault, labelled ok
    by people, comes out ok."""
    train = learn.load(learn.CORPUS / "train.jsonl")

    def embed(texts: Iterable[str]) -> dict[str, Vector]:
        return vectors.get(texts, model.embed)

    before = learn.train(train, "temperature", [], embed)
    assert before is not None
    ok = before.classes.index("ok")

    def p_ok(head: SoftmaxHead, text: str) -> float:
        x = np.asarray(embed([text])[text], dtype=np.float64)[None, :]
        return float(head.proba(x)[0][head.classes.index("ok")])

    # a window the corpus calls noisy where the detectors saw nothing, and so does the head
    text = next(r.digest for r in train if r.label == "noisy" and r.statistical == "ok"
                and p_ok(before, r.digest) < 0.5)
    after = learn.train(train, "temperature", [(text, "ok")], embed)
    assert after is not None and ok == after.classes.index("ok")
    assert p_ok(after, text) > 0.5 > p_ok(before, text)


def test_the_agent_trains_gates_installs_and_reports_its_engines(
        tmp_path: Path, model: Model, vectors: learn.VectorCache) -> None:
    import shutil
    from concurrent.futures import Future

    from agent.service.diagnosing import DiagnoseLearning
    from agent.service.health import HealthService
    from agent.storage import Store
    from tests.test_diagnosis_service import KEY, Recorder, config, reading

    vectors.save()  # what an earlier start embedded
    assert vectors.path is not None
    cached = tmp_path / "data" / "diagnose" / f"vectors-{model.sha256[:16]}.npz"
    cached.parent.mkdir(parents=True)
    if vectors.path.exists():
        shutil.copy(vectors.path, cached)
    store = Store(tmp_path / "x.db")

    def on_db(fn: Callable[[], Any]) -> Future[Any]:
        done: Future[Any] = Future()
        done.set_result(fn())
        return done

    now = [1.8e9]
    out = Recorder()
    svc = HealthService(config(tmp_path), "pi", publish=out, key=KEY, clock=lambda: now[0])
    learning = DiagnoseLearning(svc, model.embed, model.sha256, tmp_path / "data", store, on_db)
    learning.prepare()
    gate = svc.status()["gates"]["temperature"]
    kinds = {k for k, e in gate["kinds"].items() if e == "model"}
    engines = svc.status()["engines"]["temperature"]
    assert {k for k, e in engines.items() if e == "model"} == kinds
    installed = svc.diagnoser.engines.get("temperature")
    assert (installed is None) == (not kinds)
    assert installed is None or installed.kinds == kinds
    learning.retrain()  # no new answers: nothing to do
    assert learning.labels_used == 0 and svc.status()["gates"]["temperature"]["labels"] == 0
    text = learn.load(learn.CORPUS / "train.jsonl")[0].digest
    store.diagnosis_label_add(now[0], "livingroom-1", "temperature", "dismissed", "noisy", "ok",
                              text, "cli")
    learning.retrain()  # a person answered: trained and gated again with it
    assert learning.labels_used == 1 and svc.status()["gates"]["temperature"]["labels"] == 1
    if "out_of_range" not in kinds:
        return
    rng = random.Random(8)
    for i in range(150):
        now[0] = 1.8e9 + 60 * i
        bad = i >= 120 and i % 3 == 0
        svc.observe(reading(now[0], -127.0 if bad else round(21 + rng.gauss(0, 0.1), 3)))
        svc.tick()
        svc.fill(model.embed)  # the agent's worker, off the lock
    topic = "edge/agents/pi/health/livingroom-1/temperature"
    faulty = [m for t, m, _ in out.sent if t == topic and m["state"] == "faulty"]
    assert faulty and faulty[0]["fault"] == "out_of_range" and faulty[0]["engine"] == "model"
    store.close()


def test_edge_agent_status_says_which_engine_diagnoses_each_quantity() -> None:
    from agent.service.statusview import render

    status = {"state": "online", "health": {"engines": {
        "temperature": {"stuck": "statistical", "spiky": "model", "drift": "model"},
        "humidity": {"stuck": "statistical"}}}}
    lines = render({"pi": status}, "pi")
    assert lines[-1].split("diagnosis: ")[1] == \
        "humidity: statistical, temperature: model (drift, spiky)"
    assert render({"pi": {"state": "online"}}, "pi")[-1].startswith("pi (this agent)")


def test_the_gate_counts_alarms_as_the_trackers_raise_them() -> None:
    seq = ["ok", "stuck", "stuck", "ok", "stuck", "ok", "ok", "ok", "stuck", "drift", "drift"]
    assert learn.alarms(enumerate(seq)) == [(1, "stuck"), (8, "stuck"), (9, "drift")]


def test_the_gate_on_whole_held_out_series_with_the_real_model(
        model: Model, vectors: learn.VectorCache) -> None:
    train = learn.load(learn.CORPUS / "train.jsonl")
    seqs = learn.load_sequences(learn.CORPUS / "gate-sequences.json")
    assert {s["seed"] for s in seqs.series}.isdisjoint({r.seed for r in train})

    def embed(texts: Iterable[str]) -> dict[str, Vector]:
        return vectors.get(texts, model.embed)

    head = learn.train(train, "temperature", [], embed)
    assert head is not None
    verdict = learn.trace_gate(head, seqs, "temperature", embed)
    assert set(verdict.statistical) >= {"stuck", "silent", "ok"}
    for kind in verdict.model_kinds:  # never worse; better or as good and twice as fast
        assert verdict.model[kind].score >= verdict.statistical[kind].score
        assert better(verdict.model[kind], verdict.statistical[kind])
    if verdict.model_kinds:
        assert verdict.model["ok"].score >= verdict.statistical["ok"].score
