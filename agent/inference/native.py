"""llama.cpp's native side: loading a GGUF file, and its log lines routed into ours (debug
chatter dropped, errors kept for the next error message)."""

from __future__ import annotations

import ctypes
import logging
from collections import deque
from pathlib import Path
from typing import Any

import llama_cpp

from agent.errors import AgentError

native_log = logging.getLogger("agent.inference.llama_cpp")

BATCH = 512  # tokens per llama_decode call
UBATCH = 128  # tokens per compute step: as fast as 512 here, 25 MB less on long prompts
_GGML_LOG_ERROR = 4
# ggml's levels (1 debug and 5 continuation lines are dropped) -> ours
_NATIVE_LEVELS = {2: logging.DEBUG, 3: logging.INFO, _GGML_LOG_ERROR: logging.WARNING}

_native_errors: deque[str] = deque(maxlen=8)


def _on_native_log(level: int, text: bytes | None, user_data: Any) -> None:
    """llama.cpp's log lines: its debug chatter (thousands of lines per load) is dropped,
    info goes to debug, warnings to info, errors to warning and into our error messages."""
    if level not in _NATIVE_LEVELS:
        return
    message = (text or b"").decode("utf-8", errors="replace").rstrip()
    if not message:
        return
    if level == _GGML_LOG_ERROR:
        _native_errors.append(message)
    native_log.log(_NATIVE_LEVELS[level], "%s", message)


# llama-cpp-python's own callback maps ggml's levels wrongly and prints warnings to stderr
_NATIVE_CALLBACK = llama_cpp.llama_log_callback(_on_native_log)


def route_logs() -> None:
    llama_cpp.llama_log_set(_NATIVE_CALLBACK, ctypes.c_void_p(0))


def forget_errors() -> None:
    """Forget earlier error lines, before a call whose own errors are wanted."""
    _native_errors.clear()


def detail(default: str) -> str:
    """The error lines llama.cpp logged since they were last read (or ``default``)."""
    detail = "; ".join(_native_errors) or default
    _native_errors.clear()
    return detail


def load(path: Path, *, threads: int, context: int) -> Any:
    if not path.is_file():
        raise AgentError(f"cannot load model {path}: no such file")
    route_logs()
    _native_errors.clear()
    try:
        return llama_cpp.Llama(
            model_path=str(path),
            n_ctx=context,
            n_batch=min(BATCH, context),
            n_ubatch=min(UBATCH, context),
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
    except (ValueError, RuntimeError, OSError) as exc:
        reason = detail(str(exc))
        raise AgentError(f"cannot load model {path}: {reason}") from None


def trim() -> None:
    """Give the C heap's free memory back to the system (glibc ``malloc_trim``, every arena):
    loading a model frees its temporary buffers, which malloc otherwise keeps resident."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def count_tokens(path: Path, texts: list[str]) -> int:
    """The most tokens any of ``texts`` takes, with only the model's vocabulary loaded (a few
    MB and milliseconds): to size a context before the model itself is loaded."""
    route_logs()
    try:
        vocab = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    except (ValueError, RuntimeError, OSError) as exc:
        raise AgentError(f"cannot read the vocabulary of {path}: {detail(str(exc))}") from None
    try:
        return max((len(vocab.tokenize(t.encode(), add_bos=True, special=True)) for t in texts),
                   default=0)
    finally:
        vocab.close()
