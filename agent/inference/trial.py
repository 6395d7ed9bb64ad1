"""Try a model in a child process before this one trusts it: load, a prompt, an embedding, a
few generated tokens.

llama.cpp is native code: a build that uses instructions the CPU cannot execute (a VM that
advertises AMX it cannot run) dies of SIGILL, a bad file can crash it outright. Run in the
agent's own process that kills the agent; run here, the child dies and the parent gets one
clear sentence about what happened and what to do. ``edge-agent doctor``, the agent at start
and the model-update path all go through :func:`run_trial`.

The child is this module run as ``python -m agent.inference.trial``; it prints one JSON object
on its last line of standard output.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import AgentError

if TYPE_CHECKING:
    from agent.inference.locate import ModelFile
    from agent.inference.model import Model

MIN_PROMPT_TOKENS = 64
GENERATE_TOKENS = 8
REBUILD = (
    "rebuild llama-cpp-python for this CPU: rm -f .venv/.edge-agent-llama && "
    "rm -rf ~/.cache/edge-agent/wheels && scripts/setup"
)
_SIGNAL_MEANING: dict[int, str] = {
    signal.SIGILL: "illegal instruction: the llama.cpp build uses CPU instructions this "
    "machine cannot run",
    signal.SIGSEGV: "segmentation fault inside llama.cpp",
    signal.SIGBUS: "bus error: the model file changed or is on failing storage",
    signal.SIGFPE: "arithmetic fault inside llama.cpp",
    signal.SIGABRT: "llama.cpp aborted",
    signal.SIGKILL: "killed (out of memory, or the trial ran past its time)",
}


@dataclass
class TrialResult:
    """What the child reported, or why it did not."""

    ok: bool
    reason: str = ""
    signal: str | None = None
    seconds: float = 0.0
    report: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """One line for a person: what happened and, for a crash, what to do."""
        if self.ok:
            r = self.report
            return (
                f"model ok: prompt {r['prompt_tokens']} tokens at {r['prompt_tps']:.0f} tok/s, "
                f"generation {r['gen_tps']:.1f} tok/s, embedding {r['embedding_size']} values, "
                f"{r['rss_mb']:.0f} MB resident"
            )
        return f"model unusable: {self.reason}"


def run_trial(
    path: Path,
    *,
    threads: int,
    context: int,
    timeout: float = 300.0,
    python: str = sys.executable,
) -> TrialResult:
    """Load ``path`` in a child process and exercise it; never raises for what the child did."""
    cmd = [
        python, "-m", "agent.inference.trial", str(path.resolve()),
        "--threads", str(threads), "--context", str(context),
    ]
    started = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
            cwd=_package_root(),
        )
    except subprocess.TimeoutExpired:
        return TrialResult(False, f"the trial of {path.name} did not finish in {timeout:.0f}s")
    except OSError as exc:
        return TrialResult(False, f"cannot start the model trial: {exc}")
    seconds = time.monotonic() - started
    if proc.returncode < 0:
        return _crashed(path, -proc.returncode, proc.stderr, seconds)
    report = _last_json(proc.stdout)
    if proc.returncode != 0 or report is None or not report.get("ok"):
        reason = (report or {}).get("error") or _last_line(proc.stderr) or (
            f"the trial exited with status {proc.returncode}"
        )
        return TrialResult(False, str(reason), seconds=seconds, report=report or {})
    return TrialResult(True, seconds=seconds, report=report)


def check(path: Path, *, threads: int, context: int) -> None:
    """Raise :class:`AgentError` with the trial's reason unless ``path`` runs here."""
    result = run_trial(path, threads=threads, context=min(context, 512))
    if not result.ok:
        raise AgentError(result.reason)


def tried_model(model: ModelFile, threads: int, context: int) -> Callable[[], Model]:
    """A factory for the inference worker: the trial in a child process first, and only if
    the child lived, the model in this process."""

    def load() -> Model:
        from agent.inference.model import Model

        check(model.path, threads=threads, context=context)
        return Model(model.path, threads=threads, context=context, sha256=model.sha256)

    return load


def _crashed(path: Path, signum: int, stderr: str, seconds: float) -> TrialResult:
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    meaning = _SIGNAL_MEANING.get(signum, "killed by a signal")
    reason = f"llama.cpp crashed with {name} ({meaning}) running {path.name}; {REBUILD}"
    if signum == signal.SIGKILL:
        reason = f"the model trial was killed with SIGKILL ({meaning}) running {path.name}"
    del stderr  # the child's Python traceback of a native crash says nothing more
    return TrialResult(False, reason, signal=name, seconds=seconds)


def _package_root() -> str:
    """Where ``agent`` is importable from, so the child runs this very code."""
    return str(Path(__file__).resolve().parents[2])


def _last_json(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        return value if isinstance(value, dict) else None
    return None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


# -- the child ---------------------------------------------------------------------------------


def exercise(path: Path, *, threads: int, context: int) -> dict[str, Any]:
    """In the child: load the model and run a prompt, an embedding and a short generation."""
    import llama_cpp

    from agent.inference.model import Model
    from agent.inference.speed import generation_speed, prompt_speed, resident_mb

    path = path.resolve()
    started = time.perf_counter()
    with Model(path, threads=threads, context=context, sha256="trial") as model:
        load_s = time.perf_counter() - started
        prompt_tps, prompt_tokens = prompt_speed(model)
        if prompt_tokens < MIN_PROMPT_TOKENS:
            raise RuntimeError(f"the trial prompt is only {prompt_tokens} tokens")
        vector = model.embed("livingroom temperature 26.1 C above its band 20-24 C")
        gen_tps, gen_tokens = generation_speed(model, GENERATE_TOKENS)
        rss = resident_mb()
        system_info = llama_cpp.llama_print_system_info()
    return {
        "ok": True,
        "model": path.name,
        "threads": threads,
        "context": context,
        "load_s": round(load_s, 3),
        "prompt_tokens": prompt_tokens,
        "prompt_tps": prompt_tps,
        "gen_tokens": gen_tokens,
        "gen_tps": gen_tps,
        "embedding_size": int(vector.shape[0]),
        "rss_mb": rss or 0.0,
        "system_info": system_info.decode(errors="replace").strip()
        if isinstance(system_info, bytes)
        else str(system_info).strip(),
        "llama_cpp_version": getattr(llama_cpp, "__version__", "unknown"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agent.inference.trial",
        description="Load a GGUF model and run a prompt, an embedding and a short generation; "
        "print the result as JSON (used by edge-agent doctor and the agent).",
    )
    parser.add_argument("model", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--context", type=int, default=512)
    args = parser.parse_args(argv)
    try:
        report = exercise(args.model, threads=args.threads, context=args.context)
    except Exception as exc:  # the parent wants the reason as data, whatever it was
        print(json.dumps({"ok": False, "error": str(exc) or type(exc).__name__}))
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
