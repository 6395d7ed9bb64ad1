"""The model trial in a child process and ``edge-agent doctor``: a build that crashes on this
CPU is one clear line and exit 1, never a dead terminal; a good one is a report and exit 0."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

from agent.broker import Mosquitto
from agent.config import read_yaml
from agent.inference.trial import MIN_PROMPT_TOKENS, run_trial
from tests.conftest import EXAMPLE_CONFIG
from tests.helpers import ROOT, bundled

BUNDLED = bundled()


def doctor(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "doctor", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=timeout,
    )


def config(tmp_path: Path, port: int, **model: object) -> Path:
    data = read_yaml(EXAMPLE_CONFIG.read_text())
    data["agent"]["data_dir"] = str(tmp_path / "data")
    data["mqtt"]["port"] = port
    data["security"]["command_key_file"] = None
    data["policies"], data["interlocks"] = [], []
    data["model"].update(model)
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def crashing_python(tmp_path: Path, sig: signal.Signals) -> str:
    """An interpreter stand-in that dies of ``sig`` at once, as a bad native build does."""
    script = tmp_path / f"python-{sig.name}"
    script.write_text(f"#!/bin/sh\nkill -{sig.name.removeprefix('SIG')} $$\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_trial_runs_a_long_prompt_an_embedding_and_a_generation() -> None:
    result = run_trial(BUNDLED.path, threads=1, context=512)
    assert result.ok, result.reason
    r = result.report
    assert r["prompt_tokens"] >= MIN_PROMPT_TOKENS
    assert r["gen_tokens"] >= 1 and r["gen_tps"] > 0 and r["prompt_tps"] > 0
    assert r["embedding_size"] == 576  # SmolLM2-135M's hidden size
    assert r["rss_mb"] > 50
    assert "CPU" in r["system_info"]


@pytest.mark.parametrize("sig", [signal.SIGILL, signal.SIGSEGV])
def test_a_child_killed_by_a_signal_is_one_clear_reason(tmp_path: Path,
                                                        sig: signal.Signals) -> None:
    result = run_trial(BUNDLED.path, threads=1, context=512,
                       python=crashing_python(tmp_path, sig))
    assert not result.ok
    assert result.signal == sig.name
    assert sig.name in result.reason and "rebuild" in result.reason
    assert "\n" not in result.line()


def test_a_file_llama_cpp_cannot_load_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(4096))
    result = run_trial(bad, threads=1, context=512)
    assert not result.ok and result.signal is None
    assert "cannot load model" in result.reason


def test_doctor_reports_and_exits_0(tmp_path: Path, broker: Mosquitto) -> None:
    proc = doctor("-c", str(config(tmp_path, broker.port)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.startswith("cpu ")
    assert "llama.cpp" in out and "CPU :" in out  # the build's own system info
    assert "ok   model" in out and "tok/s" in out and "MB resident" in out
    assert f"ok   broker     127.0.0.1:{broker.port}" in out
    assert "ok   data dir" in out
    assert "doctor: this machine can run the agent" in out


def test_doctor_exits_1_when_the_trial_dies_of_sigill(tmp_path: Path, broker: Mosquitto) -> None:
    """The real child, killed with SIGILL while it runs: what a build with instructions this
    CPU lacks does (AMX on a VM that advertises it)."""
    cfg = config(tmp_path, broker.port)
    proc = subprocess.Popen([sys.executable, "-m", "agent", "doctor", "-c", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    killed = threading.Event()

    def kill_the_trial() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            for child in psutil.Process(proc.pid).children():
                if "agent.inference.trial" in " ".join(child.cmdline()):
                    child.send_signal(signal.SIGILL)
                    killed.set()
                    return
            time.sleep(0.01)

    threading.Thread(target=kill_the_trial, daemon=True).start()
    out, err = proc.communicate(timeout=300)
    assert killed.is_set()
    assert proc.returncode == 1, out + err
    lines = [line for line in out.splitlines() if "SIGILL" in line]
    assert len(lines) == 1
    assert lines[0].startswith("FAIL model") and "illegal instruction" in lines[0]
    assert "rebuild" in lines[0]
    assert "doctor: 1 problem(s): model" in out


def test_doctor_names_what_a_configuration_lacks(tmp_path: Path) -> None:
    cfg = config(tmp_path, 1)  # nothing listens on port 1
    data = yaml.safe_load(cfg.read_text())
    data["security"]["command_key_file"] = str(tmp_path / "missing.key")
    cfg.write_text(yaml.safe_dump(data))
    proc = doctor("-c", str(cfg))
    assert proc.returncode == 1
    assert "FAIL broker" in proc.stdout and "FAIL keys" in proc.stdout
    assert "ok   model" in proc.stdout


def test_doctor_on_a_bad_config_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {threads: zero}\n")
    proc = doctor("-c", str(bad))
    assert proc.returncode == 2
    assert "model.threads" in proc.stderr
