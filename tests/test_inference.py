"""The inference layer on the real bundled GGUF model: embeddings, scores, generation, worker."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from agent.errors import AgentError
from agent.inference.model import Model
from agent.inference.threads import free_cores, pick_threads, usable_cores
from agent.inference.worker import InferenceTimeout, InferenceWorker
from tests.helpers import bundled

BUNDLED = bundled()
CAPITAL = "The capital of France is"
ACTION_GRAMMAR = r"""
root   ::= "{\"action\": " action ", \"value\": " value "}"
action ::= "\"heat\"" | "\"cool\"" | "\"off\""
value  ::= [0-9] [0-9]? ("." [0-9])?
"""


def load(threads: int | None = None) -> Model:
    return Model(BUNDLED.path, threads=pick_threads(threads), context=2048, sha256=BUNDLED.sha256)


@pytest.fixture(scope="module")
def model() -> Iterator[Model]:
    with load() as m:
        yield m


@pytest.fixture(scope="module")
def chat(model: Model) -> tuple[str, str]:
    return model.chat(
        "You control the heating of one room. Reply with JSON only.",
        "The kitchen is at 17.5 C and should be between 20 and 24 C. What do you do?",
    )


# -- threads ------------------------------------------------------------------------------


def test_free_cores_is_between_one_and_the_usable_cores() -> None:
    assert 1 <= free_cores(sample_seconds=0.05) <= len(usable_cores())


def test_pick_threads_honours_a_request_up_to_the_usable_cores() -> None:
    cores = len(usable_cores())
    assert pick_threads(1) == 1
    assert pick_threads(cores + 5) == cores
    assert 1 <= pick_threads(None) <= cores


def test_pick_threads_rejects_zero() -> None:
    with pytest.raises(AgentError, match="at least 1"):
        pick_threads(0)


# -- loading ------------------------------------------------------------------------------


def test_model_attributes(model: Model) -> None:
    assert model.name == BUNDLED.path.name
    assert model.sha256 == BUNDLED.sha256
    assert model.n_embd == 576


def test_a_missing_file_is_an_agent_error(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match=r"cannot load model .*no such file"):
        Model(tmp_path / "absent.gguf", threads=1, context=256, sha256="")


def test_a_file_that_is_not_gguf_is_an_agent_error(tmp_path: Path) -> None:
    junk = tmp_path / "notes.gguf"
    junk.write_bytes(b"these are not the weights you are looking for\n" * 100)
    with pytest.raises(AgentError, match=r"cannot load model .*notes\.gguf"):
        Model(junk, threads=1, context=256, sha256="")


# -- embeddings ---------------------------------------------------------------------------


def test_embed_is_deterministic_float32_and_normalised(model: Model) -> None:
    first = model.embed("livingroom temperature 25.1 C, ABOVE the band 20-24 C")
    again = model.embed("livingroom temperature 25.1 C, ABOVE the band 20-24 C")
    assert first.dtype == np.float32
    assert first.shape == (model.n_embd,)
    assert np.array_equal(first, again)
    assert abs(float(np.linalg.norm(first)) - 1.0) < 1e-5


def test_embed_differs_for_different_texts(model: Model) -> None:
    weather = model.embed("the quick brown fox jumps over the lazy dog")
    reading = model.embed("kitchen humidity 41 %, steady")
    assert float(weather @ reading) < 0.9


def test_embed_and_raw_generate_are_not_disturbed_by_other_work(
    model: Model, chat: tuple[str, str]
) -> None:
    before = model.embed("office temperature 22.0 C")
    raw_before = model.raw_generate(CAPITAL, max_tokens=6)
    model.score(CAPITAL, "", [" Paris"])
    model.generate(*chat, max_tokens=4)
    assert np.array_equal(model.embed("office temperature 22.0 C"), before)
    assert model.raw_generate(CAPITAL, max_tokens=6) == raw_before


def test_above_minus_below_points_the_same_way_for_different_digests(model: Model) -> None:
    # the vectors of one digest with ABOVE and with BELOW are close (cosine ~0.99, closer
    # than a rephrasing), but their difference is a consistent direction a linear head
    # can learn: measured cosines between rooms are 0.84-0.95
    def direction(room: str, value: str) -> npt.NDArray[np.float32]:
        above = model.embed(f"{room} temperature {value} C, ABOVE the band 20-24 C")
        below = model.embed(f"{room} temperature {value} C, BELOW the band 20-24 C")
        diff: npt.NDArray[np.float32] = above - below
        unit: npt.NDArray[np.float32] = diff / np.linalg.norm(diff)
        return unit

    assert float(direction("livingroom", "25.1") @ direction("garage", "15.7")) > 0.5


def test_embed_with_a_kept_fixed_part_matches_the_whole_text(model: Model) -> None:
    fixed = "Bench-room temperature (target range 20-24 C):"
    texts = [f"{fixed} 26.0 C is ABOVE by 2.0 C. Trend: rising.",
             f"{fixed} 22.0 C is INSIDE. Trend: falling."]
    model.clear_prefix_cache()
    hits, misses, evaluated = (model.stats.prefix_hits, model.stats.prefix_misses,
                               model.stats.evaluated_tokens)
    for text in texts:  # the first evaluates and keeps the fixed part, the second reuses it
        assert np.abs(model.embed(text, fixed) - model.embed(text)).max() < 1e-6
    assert (model.stats.prefix_hits, model.stats.prefix_misses) == (hits + 1, misses + 1)
    n = [len(model._tokenize(t, special=False)) for t in [*texts, fixed]]
    assert model.stats.evaluated_tokens - evaluated == 2 * (n[0] + n[1]) - n[2]
    assert np.abs(model.embed(fixed, fixed) - model.embed(fixed)).max() < 1e-6  # all of it


def test_embed_ignores_a_fixed_part_that_does_not_lead_the_text(model: Model) -> None:
    hits, misses = model.stats.prefix_hits, model.stats.prefix_misses
    text = "Office temperature 22.0 C"
    for fixed in ("Kitchen", "Office temperature 22.0 C and more", "Office temp"):
        assert np.array_equal(model.embed(text, fixed), model.embed(text))
    assert (model.stats.prefix_hits, model.stats.prefix_misses) == (hits, misses)


def test_embed_rejects_an_empty_text(model: Model) -> None:
    with pytest.raises(AgentError, match="empty"):
        model.embed("")


# -- scores -------------------------------------------------------------------------------


def test_score_prefers_the_plausible_option(model: Model) -> None:
    paris, banana = model.score(CAPITAL, "", [" Paris", " banana"])
    assert paris > banana
    assert paris <= 0.0


def test_score_cached_equals_uncached(model: Model, chat: tuple[str, str]) -> None:
    prefix, suffix = chat
    options = ['{"action": "heat"', '{"action": "cool"', '{"action": "off"']
    model.clear_prefix_cache()
    cold = model.score(prefix, suffix, options)
    warm = model.score(prefix, suffix, options)
    single_pass = model.score("", prefix + suffix, options)  # no prefix state at all
    assert np.allclose(cold, warm, atol=1e-3)
    assert np.allclose(cold, single_pass, atol=1e-3)


def test_score_of_a_multi_token_option_follows_the_chain_rule(model: Model) -> None:
    (whole,) = model.score(CAPITAL, "", [" Paris and Lyon"])
    (first,) = model.score(CAPITAL, "", [" Paris"])
    (rest,) = model.score(CAPITAL, " Paris", [" and Lyon"])
    assert whole == pytest.approx(first + rest, abs=1e-3)


def test_score_of_an_empty_option_is_zero(model: Model) -> None:
    assert model.score(CAPITAL, "", ["", " Paris"])[0] == 0.0


def test_a_prompt_longer_than_the_context_is_an_agent_error(model: Model) -> None:
    with pytest.raises(AgentError, match="do not fit"):
        model.score("", "word " * 3000, [" Paris"])


def test_prefix_cache_counts_hits_and_misses(model: Model) -> None:
    model.clear_prefix_cache()
    hits, misses = model.stats.prefix_hits, model.stats.prefix_misses
    model.score(CAPITAL, "", [" Paris"])
    model.score(CAPITAL, " Paris", [" and"])
    assert (model.stats.prefix_hits, model.stats.prefix_misses) == (hits + 1, misses + 1)


def test_prefix_cache_forgets_the_least_recently_used(model: Model) -> None:
    model.clear_prefix_cache()
    prefixes = [f"Room {i} reports:" for i in range(5)]  # one more than the cache holds
    for prefix in prefixes:
        model.score(prefix, "", [" ok"])
    misses = model.stats.prefix_misses
    model.score(prefixes[-1], "", [" ok"])
    assert model.stats.prefix_misses == misses
    model.score(prefixes[0], "", [" ok"])
    assert model.stats.prefix_misses == misses + 1


# -- generation ---------------------------------------------------------------------------


def test_generate_under_a_grammar_returns_json_of_the_grammar(
    model: Model, chat: tuple[str, str]
) -> None:
    text = model.generate(*chat, grammar=ACTION_GRAMMAR)
    reply = json.loads(text)
    assert reply["action"] in {"heat", "cool", "off"}
    assert 0 <= reply["value"] < 100


def test_generate_cached_uncached_and_raw_give_the_same_text(
    model: Model, chat: tuple[str, str]
) -> None:
    model.clear_prefix_cache()
    cold = model.generate(*chat, grammar=ACTION_GRAMMAR)
    warm = model.generate(*chat, grammar=ACTION_GRAMMAR)
    raw = model.raw_generate("".join(chat), grammar=ACTION_GRAMMAR)
    assert cold == warm == raw
    free = model.generate(*chat, max_tokens=24)
    assert free == model.raw_generate("".join(chat), max_tokens=24)


def test_generate_stops_before_a_stop_string(model: Model) -> None:
    text = model.generate("", "Count: one, two, three, four, five,", max_tokens=32, stop=[","])
    assert "," not in text
    assert (
        model.generate("", "Count: one, two, three, four, five,", max_tokens=32, stop=",") == text
    )
    assert text == model.raw_generate(
        "Count: one, two, three, four, five,", max_tokens=32, stop=[","]
    )


def test_generate_rejects_a_bad_grammar(model: Model, chat: tuple[str, str]) -> None:
    with pytest.raises(AgentError, match="invalid grammar"):
        model.generate(*chat, grammar="root ::= undefined-rule")
    with pytest.raises(AgentError, match="invalid grammar"):
        model.raw_generate("".join(chat), grammar="root ::= undefined-rule")


def test_set_threads_keeps_results(model: Model) -> None:
    threads = model.threads
    (before,) = model.score(CAPITAL, "", [" Paris"])
    model.set_threads(1)
    try:
        assert model.score(CAPITAL, "", [" Paris"])[0] == pytest.approx(before, abs=1e-3)
    finally:
        model.set_threads(threads)


def test_statistics_move(model: Model) -> None:
    before = (model.stats.evaluated_tokens, model.stats.generated_tokens, model.stats.seconds)
    model.generate("", CAPITAL, max_tokens=3)
    after = (model.stats.evaluated_tokens, model.stats.generated_tokens, model.stats.seconds)
    assert all(a > b for a, b in zip(after, before, strict=True))
    assert model.tokens_per_second() > 0


# -- chat template ------------------------------------------------------------------------


def test_chat_splits_where_the_user_text_starts(model: Model, chat: tuple[str, str]) -> None:
    prefix, rest = chat
    assert prefix.startswith("<|im_start|>system\nYou control the heating")
    assert prefix.endswith("<|im_start|>user\n")
    assert rest.startswith("The kitchen is at 17.5 C")
    assert rest.endswith("<|im_start|>assistant\n")


# -- worker -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker() -> Iterator[InferenceWorker]:
    w = InferenceWorker(lambda: load(1))
    w.start()
    w.wait_ready(60)
    yield w
    w.stop(timeout=60)


def test_worker_runs_requests_on_its_own_thread(worker: InferenceWorker) -> None:
    ident = worker.call(lambda m: threading.get_ident(), timeout=60)
    assert ident != threading.get_ident()
    assert worker.call(lambda m: m.score(CAPITAL, "", [" Paris"]), timeout=60)[0] < 0


def test_worker_propagates_exceptions_unchanged(worker: InferenceWorker) -> None:
    def fail(m: Model) -> None:
        raise KeyError("no such room")

    with pytest.raises(KeyError, match="no such room"):
        worker.call(fail, timeout=60)


def test_worker_times_out_and_cancels_what_has_not_started(worker: InferenceWorker) -> None:
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def hold(m: Model) -> bool:
        started.set()
        return release.wait(60)

    try:
        # the worker is idle, so this starts at once and then outlives its caller
        with pytest.raises(InferenceTimeout, match="did not finish"):
            worker.call(hold, timeout=0.5)
        assert started.is_set()
        # the worker is still busy with hold(): this one cannot start in time
        with pytest.raises(InferenceTimeout, match="did not start"):
            worker.call(lambda m: ran.append("late"), timeout=0.05)
    finally:
        release.set()
    worker.call(lambda m: None, timeout=60)  # the queue has moved past the cancelled one
    assert ran == []
    assert worker.queue_depth() == 0


def test_worker_reports_a_bad_model_path_as_agent_error(tmp_path: Path) -> None:
    w = InferenceWorker(lambda: Model(tmp_path / "absent.gguf", threads=1, context=256, sha256=""))
    w.start()
    try:
        with pytest.raises(AgentError, match="cannot load model"):
            w.wait_ready(60)
        assert not w.ready.is_set()
        with pytest.raises(AgentError, match="cannot load model"):
            w.submit(lambda m: None)
    finally:
        w.stop(timeout=60)


def test_a_worker_stopped_before_starting_fails_what_was_submitted() -> None:
    w = InferenceWorker(lambda: load(1))
    pending = w.submit(lambda m: m.name)
    w.stop()
    with pytest.raises(AgentError, match="stopped"):
        pending.result(1)


def test_a_stopped_worker_closes_its_model() -> None:
    w = InferenceWorker(lambda: load(1))
    w.start()
    model = w.wait_ready(60)
    w.stop(timeout=60)
    with pytest.raises(AgentError, match="stopped"):
        w.submit(lambda m: None)
    with pytest.raises(AgentError, match="closed"):
        model.embed("anything")


def test_usable_cores_are_within_the_affinity() -> None:
    assert set(usable_cores()) <= os.sched_getaffinity(0)
