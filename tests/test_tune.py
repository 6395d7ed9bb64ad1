"""Fine-tuning for real: torch + peft training on the bundled model, a llama.cpp adapter GGUF,
held-out scores before and after, and the atomic install (issue 7).

One short tuning run (tens of steps) is shared by the module; the other runs here are
shorter still (one step, or interrupted at its first step).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from click.testing import CliRunner

from agent.broker import Mosquitto
from agent.cli import cli
from agent.config import Config, load_config
from agent.inference.adapters import (
    adapter_for,
    install_adapter,
    installed,
    policy_target,
    record_path,
    tune_dir,
)
from agent.inference.model import Model
from agent.inference.quantize import quantize
from agent.policy.engines import LlmEngine
from agent.policy.heldout import held_out_sets
from agent.tune.export import permute, write_adapter, write_merged
from agent.tune.run import Options, Outcome, tune
from tests.conftest import AgentProcess, Collector, agent_config, wait_for
from tests.helpers import ROOT, bundled

HOME = ROOT / "config" / "home.example.yaml"
POLICY = "livingroom-climate"
TARGET = policy_target(POLICY)
BUNDLED = bundled()
STEPS = 24
CASES = 20  # per held-out set: 60 decisions before and 60 after


def config_in(data_dir: Path) -> tuple[Config, Path]:
    """The example home with its data in ``data_dir``, and that config as a file."""
    text = HOME.read_text().replace("data_dir: ./data/home", f"data_dir: {data_dir}")
    path = data_dir.parent / f"{data_dir.name}.yaml"
    path.write_text(text)
    return load_config(path), path


@dataclass
class Run:
    config: Config
    config_file: Path
    outcome: Outcome
    lines: list[str]

    @property
    def data_dir(self) -> Path:
        return self.config.agent.data_dir


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    config, path = config_in(tmp_path_factory.mktemp("tune") / "data")
    lines: list[str] = []
    options = Options(steps=STEPS, cases=CASES, samples=240)
    outcome = tune(config, POLICY, options, lines.append)
    return Run(config, path, outcome, lines)


@pytest.fixture(scope="module")
def base() -> Iterator[Model]:
    with Model(BUNDLED.path, threads=1, context=2048, sha256=BUNDLED.sha256) as m:
        yield m


@pytest.mark.slow
def test_a_short_run_installs_an_adapter_that_scores_strictly_better(run: Run) -> None:
    o = run.outcome
    assert o.after is not None
    assert o.after.correct > o.before.correct, run.lines
    assert o.installed and o.adapter is not None
    assert o.before_name == "base model"
    assert any(line.startswith(f"step {STEPS}/{STEPS} loss") for line in run.lines)
    pointer = json.loads((tune_dir(run.data_dir, TARGET) / "models" / "current.json").read_text())
    assert pointer["sha256"] == o.sha256 == o.adapter.name.split("-")[0]
    record = installed(run.data_dir, TARGET)
    assert record is not None and record[1]["base_sha256"] == BUNDLED.sha256
    assert record[1]["after"]["accuracy"] == o.after.accuracy
    assert adapter_for(run.data_dir, TARGET, BUNDLED.sha256) == o.adapter
    assert adapter_for(run.data_dir, TARGET, "0" * 64) is None  # another base: not used
    assert 1 << 20 < o.size < 20 << 20
    assert not list(tune_dir(run.data_dir, TARGET).glob(".run-*"))  # scratch removed


@pytest.mark.slow
def test_the_adapter_loads_in_llama_cpp_and_answers_in_the_format(run: Run, base: Model) -> None:
    assert run.outcome.adapter is not None
    policy = next(p for p in run.config.policies if p.name == POLICY)
    engine = LlmEngine(policy, base.chat, base.score)
    cases = held_out_sets(run.config, policy, 6)["held-out"]
    with base.adapter(run.outcome.adapter):
        for example in cases:
            prefix, suffix = base.chat(engine.system, example.digest)
            text = base.generate(prefix, suffix, max_tokens=8)  # free text, no grammar
            assert text.strip() in policy.actuators[0].actions, text


@pytest.mark.slow
def test_a_zero_adapter_gives_identical_logits_and_a_random_one_does_not(
    base: Model, tmp_path: Path
) -> None:
    """The export round trip: B = 0 must change nothing, bit for bit."""
    zero, noisy = tmp_path / "zero.gguf", tmp_path / "noisy.gguf"
    write_adapter(
        zero, random_lora(np.random.default_rng(0), zero_b=True), alpha=32, n_head=9, n_head_kv=3
    )
    write_adapter(
        noisy, random_lora(np.random.default_rng(0), zero_b=False), alpha=32, n_head=9, n_head_kv=3
    )
    prefix, suffix = base.chat("Answer with one word.", "Is 27.5 C above 20-24 C?")
    options = ["yes", "no", "cool", "heat"]
    plain = base.score(prefix, suffix, options)
    with base.adapter(zero):
        assert base.score(prefix, suffix, options) == plain
    with base.adapter(noisy):
        assert base.score(prefix, suffix, options) != plain
    assert base.score(prefix, suffix, options) == plain  # back on the base weights


@pytest.mark.slow
def test_a_merge_without_change_requantised_to_q4_1_reproduces_the_original(
    base: Model, tmp_path: Path
) -> None:
    """Export round trip of the merged path: metadata, tokenizer, chat template and every
    tensor survive; a zero adapter merged, then Q4_1 again, gives the original logits."""
    zero = tmp_path / "zero.gguf"
    write_adapter(
        zero, random_lora(np.random.default_rng(1), zero_b=True), alpha=32, n_head=9, n_head_kv=3
    )
    write_merged(BUNDLED.path, zero, tmp_path / "merged.gguf")
    q41 = quantize(tmp_path / "merged.gguf", tmp_path / "merged-q4_1.gguf", "q4_1", threads=1)
    prefix, suffix = base.chat("You are a helpful assistant.", "Name three colours.")
    with Model(q41, threads=1, context=2048, sha256="merged") as merged:
        assert merged.chat("You are a helpful assistant.", "Name three colours.") == (
            prefix,
            suffix,
        )
        options = ["Red", "Blue", "Sure"]
        assert merged.score(prefix, suffix, options) == base.score(prefix, suffix, options)
        assert merged.generate(prefix, suffix, max_tokens=16) == base.generate(
            prefix, suffix, max_tokens=16
        )


def random_lora(
    rng: np.random.Generator, *, zero_b: bool
) -> dict[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]:
    """Adapters of SmolLM2-135M's shapes (30 layers, 9 query and 3 key/value heads of 64)."""
    lora = {}
    for layer in range(30):
        for name, out in (("q_proj", 576), ("k_proj", 192), ("v_proj", 192), ("o_proj", 576)):
            a = rng.normal(0, 0.1, (16, 576)).astype(np.float32)
            b = np.zeros((out, 16), np.float32) if zero_b else rng.normal(0, 0.05, (out, 16))
            lora[f"model.layers.{layer}.self_attn.{name}"] = (a, b.astype(np.float32))
    return lora


def test_the_q_k_permutation_is_convert_hf_to_gguf_s() -> None:
    """Rows [h0 first half, h0 second half] -> interleaved pairs, per head."""
    rows = np.arange(8, dtype=np.float32).reshape(8, 1)  # 2 heads of 4 rows
    assert permute(rows, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


@pytest.mark.slow
def test_a_worse_model_is_never_installed(run: Run, tmp_path: Path) -> None:
    """A one-step tuning against the installed adapter: measured, refused, nothing moves."""
    data = tmp_path / "data"
    shutil.copytree(run.data_dir, data)
    config, _ = config_in(data)
    pointer = tune_dir(config.agent.data_dir, TARGET) / "models" / "current.json"
    before = pointer.read_bytes()
    lines: list[str] = []
    outcome = tune(config, POLICY, Options(steps=1, cases=CASES, samples=16), lines.append)
    assert outcome.before_name == run.outcome.adapter.name  # type: ignore[union-attr]
    assert outcome.after is not None and not outcome.after.better_than(outcome.before)
    assert not outcome.installed
    assert outcome.reason.startswith("not installed:") and "keeping" in outcome.reason
    assert pointer.read_bytes() == before
    models = sorted(p.name for p in pointer.parent.iterdir())
    assert models == sorted(p.name for p in (tune_dir(run.data_dir, TARGET) / "models").iterdir())


@pytest.mark.slow
def test_an_interrupted_run_leaves_the_old_model(run: Run, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(run.data_dir, data)
    _, config_file = config_in(data)
    models = data / "tuned" / TARGET / "models"
    before = {p.name: p.read_bytes() for p in models.iterdir()}
    args = ["tune", "-c", str(config_file), "--policy", POLICY, "--steps", "40", "--cases", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", *args, "--samples", "40"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        if line.startswith("step 1/40") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "interrupted; the model in use is unchanged" in err
    assert {p.name: p.read_bytes() for p in models.iterdir()} == before
    assert not list((data / "tuned" / TARGET).glob(".run-*"))


def test_tune_usage_errors_exit_2(tmp_path: Path) -> None:
    _, path = config_in(tmp_path / "data")
    runner = CliRunner()
    both = runner.invoke(cli, ["tune", "-c", str(path), "--policy", POLICY, "--intents"])
    assert both.exit_code == 2 and "exactly one of" in both.output
    unknown = runner.invoke(cli, ["tune", "-c", str(path), "--policy", "garage", "--dry-run"])
    assert unknown.exit_code == 2 and "no policy named 'garage'" in unknown.output


def test_tune_dry_run_shows_samples_without_training(tmp_path: Path) -> None:
    _, path = config_in(tmp_path / "data")
    runner = CliRunner()
    result = runner.invoke(cli, ["tune", "-c", str(path), "--intents", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "intent samples" in result.output and '"action": ' in result.output
    decide = runner.invoke(cli, ["tune", "-c", str(path), "--policy", POLICY, "--dry-run"])
    assert decide.exit_code == 0 and "target range" in decide.output
    assert not (tmp_path / "data" / "tuned").exists()


@pytest.mark.slow
@pytest.mark.broker
def test_the_running_agent_decides_with_the_installed_adapter(
    run: Run,
    tmp_path: Path,
    broker: Mosquitto,
    agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector],
) -> None:
    """The example agent's climate policy (same actuator, goal and band as the tuned one) on
    the llm engine: with the adapter installed for it, its gate and its decisions use it."""
    assert run.outcome.adapter is not None and run.outcome.after is not None
    path = agent_config(
        tmp_path,
        broker.port,
        policies=True,
        policy__engine="llm",
        policy__every="2s",
        policy__min_accuracy=0.6,
    )
    config = load_config(path)
    record = json.loads(record_path(run.data_dir, TARGET, str(run.outcome.sha256)).read_text())
    data_dir = config.agent.data_dir
    install_adapter(data_dir, "policy-climate", run.outcome.adapter, record, lambda p: None)
    watch = collector_factory(broker.port, "edge/agents/test-agent/status")
    agent = agent_factory(path)
    wait_for(
        lambda: any(
            s.get("policies", {}).get("climate", {}).get("state") not in (None, "pending")
            for s in watch.on("edge/agents/test-agent/status")
        ),
        timeout=600,
        what="the fitness gate",
    )
    gate = watch.on("edge/agents/test-agent/status")[-1]["policies"]["climate"]
    assert gate["state"] == "passed" and gate["engine"] == "llm", gate
    assert gate["accuracy"] >= 0.6  # the base model scores about 0.33 here
    assert "llm engine with tuned adapter" in agent.log()


def test_labels_people_gave_become_training_samples(tmp_path: Path) -> None:
    """Overrides recorded in the audit's examples table are trained on; foreign actions not."""
    from agent.storage import Store
    from agent.tune.run import find_policy, samples_for

    config, _ = config_in(tmp_path / "data")
    store = Store(config.db_path)
    digest = "Temperature 23.9 C is INSIDE the target range 20-24 C. Trend: rising."
    store.example_add(1.0, POLICY, digest, "cool", "override")
    store.example_add(2.0, POLICY, digest, "explode", "override")
    store.close()
    lines: list[str] = []
    samples = samples_for(config, find_policy(config, POLICY), 20, lines.append)
    assert [s.answer for s in samples if s.user == digest] == ["cool"]
    assert len(samples) == 21 and "1 labels from the audit history" in lines[0]


@pytest.mark.slow
def test_an_adapter_tuned_elsewhere_is_measured_and_installed_from_its_file(
    run: Run, tmp_path: Path
) -> None:
    assert run.outcome.adapter is not None
    config, path = config_in(tmp_path / "data")
    runner = CliRunner()
    args = ["tune", "-c", str(path), "--policy", POLICY, "--cases", "5", "--from-file"]
    result = runner.invoke(cli, [*args, str(run.outcome.adapter)])
    assert result.exit_code == 0, result.output
    assert "installed for policy-livingroom-climate" in result.output
    assert adapter_for(config.agent.data_dir, TARGET, BUNDLED.sha256) is not None
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(100))
    refused = runner.invoke(cli, [*args, str(broken)])
    assert refused.exit_code == 1 and "cannot load LoRA adapter" in refused.output


@pytest.mark.slow
def test_an_adapter_from_a_file_that_is_only_as_good_is_refused(tmp_path: Path) -> None:
    """A zero adapter scores exactly like the base model (a tie, bit for bit): measured on this
    device's held-out cases and not installed."""
    adapter = tmp_path / "zero.gguf"
    lora = random_lora(np.random.default_rng(1), zero_b=True)
    write_adapter(adapter, lora, alpha=32, n_head=9, n_head_kv=3)
    config, path = config_in(tmp_path / "data")
    args = ["tune", "-c", str(path), "--policy", POLICY, "--cases", "5", "--from-file"]
    result = CliRunner().invoke(cli, [*args, str(adapter)])
    assert result.exit_code == 1, result.output
    assert "not installed:" in result.output
    assert adapter_for(config.agent.data_dir, TARGET, BUNDLED.sha256) is None
