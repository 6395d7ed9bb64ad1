"""``edge-agent doctor``: can this machine run the agent as configured? One report, one verdict.

The model is tried in a child process (:mod:`agent.inference.trial`), so a llama.cpp build
that crashes on this CPU is reported as a line, not as a dead terminal. The rest are the
things that stop a first start: the broker, the data directory, who can read the keys.
"""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.config import Config
from agent.errors import AgentError
from agent.inference.locate import locate
from agent.inference.store import current_model
from agent.inference.threads import pick_threads
from agent.inference.trial import TrialResult, run_trial
from agent.service.permissions import check_permissions, paths_to_check

Echo = Callable[[str], None]
# what a llama.cpp build may use, and what it must not use where the CPU only advertises it
CPU_FEATURES = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512_vnni", "avx512_bf16",
    "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "asimdhp", "i8mm",
    "sve",
)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fatal: bool = True  # a failure that stops the agent from working as configured

    def line(self) -> str:
        mark = "ok  " if self.ok else ("FAIL" if self.fatal else "warn")
        return f"{mark} {self.name:<10} {self.detail}"


def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The CPU features that matter to llama.cpp, as the kernel reports them."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            present = set(value.split())
            return [f for f in CPU_FEATURES if f in present]
    return []


def check_model(cfg: Config, timeout: float) -> tuple[Check, TrialResult | None]:
    try:  # the file the agent would run: an installed model update wins over model.path
        model = current_model(cfg.agent.data_dir) or locate(cfg.model.path, None)
    except (AgentError, OSError) as exc:
        return Check("model", False, str(exc)), None
    threads = pick_threads(cfg.model.threads)
    result = run_trial(
        model.path, threads=threads, context=min(cfg.model.context, 512), timeout=timeout
    )
    return Check("model", result.ok, f"{model.name}: {result.line()}"), result


def check_broker(cfg: Config, required: bool) -> Check:
    from agent.mqtt.probe import probe

    error = probe(cfg.mqtt)
    where = f"{cfg.mqtt.host}:{cfg.mqtt.port}"
    if error is None:
        return Check("broker", True, f"{where} accepts the agent's connection")
    return Check("broker", False, error, fatal=required)


def check_data_dir(path: Path, required: bool) -> Check:
    """Writable if it exists, or if it can be created (a first start creates it)."""
    target = path
    while not target.exists() and target != target.parent:
        target = target.parent
    try:
        with tempfile.NamedTemporaryFile(dir=target, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check("data dir", False, f"{path} is not writable: {exc.strerror}", fatal=required)
    state = "writable" if target == path else f"can be created (under {target})"
    return Check("data dir", True, f"{path} {state}")


def check_keys(cfg: Config, required: bool) -> Check:
    sec = cfg.security
    key = sec.command_key_file
    named = [
        ("command key", key, f"edge-agent keygen {key}"),
        ("update public key", sec.update_public_key_file,
         "edge-agent keygen --update PATH on the operator's machine, then copy PATH.pub here"),
        ("identity key", sec.identity_key_file,
         f"edge-agent keygen --identity {sec.identity_key_file}"),
        ("roster", sec.roster_file, "collect every agent's keygen --identity line into it"),
    ]
    for what, path, how in named:
        if path is not None and not path.is_file():
            return Check("keys", False, f"{what} {path} does not exist ({how})", fatal=required)
    warnings = check_permissions(paths_to_check(cfg))
    if warnings:
        return Check("keys", False, "; ".join(warnings), fatal=False)
    present = [what for what, path, _ in named if path is not None] or ["no keys configured"]
    return Check("keys", True, f"{', '.join(present)}; secret files readable by this user only")


def run_doctor(cfg: Config, echo: Echo, *, configured: bool, model_only: bool = False,
               timeout: float = 300.0) -> int:
    """Print the report; 0 when nothing fatal failed, 1 otherwise.

    ``configured``: the user named a configuration, so its broker, data directory and keys
    must work; without one the defaults are only reported. ``model_only``: set-up's check."""
    features = cpu_features()
    echo(f"cpu        {platform.machine()}, {os.cpu_count()} cores; "
         f"features: {' '.join(features) or 'unknown'}")
    check, result = check_model(cfg, timeout)
    if result is not None and result.report:
        echo(f"llama.cpp  {result.report.get('llama_cpp_version')}: "
             f"{result.report.get('system_info')}")
    checks = [check]
    if not model_only:
        checks += [
            check_broker(cfg, configured),
            check_data_dir(cfg.agent.data_dir, configured),
            check_keys(cfg, configured),
        ]
    for c in checks:
        echo(c.line())
    failed = [c for c in checks if not c.ok and c.fatal]
    if failed:
        echo(f"doctor: {len(failed)} problem(s): {', '.join(c.name for c in failed)}")
        return 1
    echo("doctor: this machine can run the agent" +
         ("" if configured or model_only else " (defaults checked; pass -c CONFIG for yours)"))
    return 0
