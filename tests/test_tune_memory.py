"""``edge-agent tune`` and memory: it refuses to start training on a device with less than
2 GB available, and ``--max-memory`` stops a training that grows past it (keeping what it
learnt). Both run the real command; the small device is a real mount namespace whose
/proc/meminfo says 1.5 GB are available."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from agent.errors import AgentError
from agent.tune.train import MIN_FREE_BYTES, check_memory
from tests.helpers import ROOT

HOME = ROOT / "config" / "home.example.yaml"
POLICY = "livingroom-climate"
SMALL = ["--cases", "1", "--samples", "16", "--no-install", "--steps", "3"]


def home(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    path = tmp_path / "home.yaml"
    path.write_text(HOME.read_text().replace("data_dir: ./data/home", f"data_dir: {data}"))
    return path


def tune(
    config: Path, *args: str, prefix: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "agent", "tune", "-c", str(config), "--policy", POLICY, *args]
    return subprocess.run([*(prefix or []), *command], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)


def test_the_guard_needs_2_gb_available() -> None:
    assert MIN_FREE_BYTES == 2 * 2**30
    available = psutil.virtual_memory().available
    check_memory(available // 2)  # enough: no error
    with pytest.raises(AgentError, match=r"not enough free memory to fine-tune: .* GB available, "
                                         r".* GB needed"):
        check_memory(available + 2**30)


def small_device(tmp_path: Path, available_kb: int) -> list[str]:
    """A command prefix running its process where /proc/meminfo says ``available_kb``."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux)")
    meminfo = tmp_path / "meminfo"
    lines = Path("/proc/meminfo").read_text().splitlines()
    meminfo.write_text("\n".join(
        f"MemAvailable:   {available_kb} kB" if ln.startswith("MemAvailable:") else ln
        for ln in lines) + "\n")
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a mount namespace here: {probe.stderr.decode().strip()}")
    return ["unshare", "-m", "--propagation", "private", "sh", "-c",
            f'mount --bind "{meminfo}" /proc/meminfo && exec "$0" "$@"']


@pytest.mark.slow
def test_tune_refuses_to_train_with_less_than_2_gb_available(tmp_path: Path) -> None:
    config = home(tmp_path)
    result = tune(config, *SMALL[:-2], "--steps", "1", prefix=small_device(tmp_path, 1536 * 1024))
    assert result.returncode == 1, result.stdout + result.stderr
    assert ("not enough free memory to fine-tune: 1.5 GB available, 2.0 GB needed"
            in result.stderr), result.stderr
    assert "before:" in result.stdout  # it measured, then refused to load torch
    assert "training" not in result.stdout
    assert not (tmp_path / "data" / "tuned").exists() or not any(
        (tmp_path / "data" / "tuned").rglob("*.gguf"))


@pytest.mark.slow
def test_max_memory_stops_the_training_and_keeps_what_it_learnt(tmp_path: Path) -> None:
    config = home(tmp_path)
    result = tune(config, *SMALL, "--max-memory", "0.05")  # 50 MB: passed at the first step
    assert result.returncode in (0, 1), result.stdout + result.stderr  # 1: not better
    assert "training stopped early: memory limit reached after 1 steps" in result.stdout
    assert "trained 1 steps" in result.stdout
    assert "after:" in result.stdout  # the adapter of that one step was measured
