"""Quantization through llama.cpp's own llama_model_quantize, on the real bundled model."""

from __future__ import annotations

from pathlib import Path

import llama_cpp
import pytest

from agent.bench.model import run_bench
from agent.errors import AgentError
from agent.inference.locate import sha256_of
from agent.inference.model import Model
from agent.inference.quantize import quantize
from tests.helpers import bundled

BUNDLED = bundled()

pytestmark = pytest.mark.skipif(
    not hasattr(llama_cpp, "llama_model_quantize"),
    reason="this llama-cpp-python build has no llama_model_quantize",
)


@pytest.fixture(scope="module")
def q8_0(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quantize(BUNDLED.path, tmp_path_factory.mktemp("q") / "smollm2-q8_0.gguf", "q8_0")


def test_the_bundled_q4_1_model_requantizes_to_q8_0_and_generates(q8_0: Path) -> None:
    assert q8_0.stat().st_size > BUNDLED.path.stat().st_size  # 8 bits a weight, not ~4.5
    assert not list(q8_0.parent.glob(".*.part"))
    with Model(q8_0, threads=1, context=256, sha256=sha256_of(q8_0)) as model:
        text = model.generate("The capital of France is", "", max_tokens=8)
    assert text.strip()


def test_an_existing_output_is_not_overwritten_unless_asked(q8_0: Path) -> None:
    with pytest.raises(AgentError, match="already exists"):
        quantize(BUNDLED.path, q8_0, "q8_0")


def test_bench_model_measures_the_bundled_baseline_and_each_file(q8_0: Path) -> None:
    lines: list[str] = []
    results = run_bench([q8_0], lines.append, tokens=8)
    assert [r.path for r in results] == [BUNDLED.path, q8_0]
    for r in results:
        assert r.load_s > 0 and r.prompt_tps > 0 and r.gen_tps > 0 and r.generated > 0
        assert r.rss_mb is not None and r.rss_mb > 0
    assert any(line.startswith("smollm2-q8_0.gguf") and "x)" in line for line in lines)
    assert lines[-1].startswith("ratios (x) are against SmolLM2-135M-Instruct.Q4_1.gguf")


def test_an_unknown_type_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="must be one of q4_0, q4_1, q8_0, q4_k_m"):
        quantize(BUNDLED.path, tmp_path / "out.gguf", "q3_x")


def test_a_file_that_is_not_gguf_fails_cleanly(tmp_path: Path) -> None:
    src = tmp_path / "not-a-model.gguf"
    src.write_bytes(b"definitely not a gguf file" * 100)
    with pytest.raises(AgentError, match="cannot quantize"):
        quantize(src, tmp_path / "out.gguf", "q4_0")
    assert not (tmp_path / "out.gguf").exists()
    assert not list(tmp_path.glob(".*.part"))
