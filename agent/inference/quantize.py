"""``edge-agent model quantize``: llama.cpp's own ``llama_model_quantize`` on a GGUF file.

The output is written next to ``dst`` under a temporary name and renamed into place only
when llama.cpp reports success, so a failed or interrupted run never leaves a half-written
model where the agent could load it.

``allow_requantize`` is always set: the bundled model is already Q4_1, and llama.cpp
refuses to quantize a quantized file without it. Going from Q4_1 to Q8_0 cannot restore
what Q4_1 lost (the Q8_0 file is about as accurate as the Q4_1 one, just larger and on
some CPUs faster); quantize from an F16/F32 file when one is available.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

import llama_cpp

from agent.errors import AgentError
from agent.inference import native

log = logging.getLogger(__name__)

KINDS: dict[str, int] = {
    "q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0,
    "q4_1": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_1,
    "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
    "q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M,
}


def quantize(src: Path, dst: Path, kind: str, *, threads: int = 0, overwrite: bool = False) -> Path:
    """Quantize ``src`` into ``dst`` as ``kind`` (q4_0, q4_1, q8_0 or q4_k_m); ``threads``
    0 lets llama.cpp use every core. Returns ``dst``; AgentError on any failure."""
    ftype = _ftype(kind)
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise AgentError(f"cannot quantize {src}: no such file")
    if dst.exists() and (not overwrite or dst.resolve() == src.resolve()):
        raise AgentError(f"{dst} already exists; choose another output file")
    tmp = dst.with_name(f".{dst.name}.part")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = max(0, threads)
    params.allow_requantize = True  # the bundled model is already quantized (Q4_1)
    native.route_logs()
    native.detail("")  # forget earlier errors
    try:
        code = llama_cpp.llama_model_quantize(
            str(src).encode(), str(tmp).encode(), ctypes.byref(params)
        )
        if code != 0:
            detail = native.detail("llama.cpp gave no reason")
            raise AgentError(f"cannot quantize {src} to {kind}: {detail}")
        os.replace(tmp, dst)
    except OSError as exc:
        raise AgentError(f"cannot write {dst}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    log.info("quantized %s to %s as %s (%d bytes)", src.name, dst, kind, dst.stat().st_size)
    return dst


def _ftype(kind: str) -> int:
    try:
        return KINDS[kind.lower()]
    except KeyError:
        raise AgentError(
            f"quantization type must be one of {', '.join(KINDS)}, got {kind!r}"
        ) from None
