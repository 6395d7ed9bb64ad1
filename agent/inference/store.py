"""Installing a verified model file: a trial load, then the ``models/current.json`` pointer.

:func:`install` loads the file once as a trial and points ``data_dir/models/current.json`` at
it: a small JSON pointer ``{"file", "sha256", "name", "ts", "version", "previous"}`` replaced
durably (fsync, then ``os.replace``). A pointer rather than a symlink because it also carries
the verified hash (no rehashing of a large file at start) and the model it replaced. The
pointer moves only after a successful trial, so a trial that fails, or even crashes the
process, leaves the old model in place. The downgrade floor is not the pointer's business: it
is :class:`agent.durable.VersionFloor`, raised before a transfer starts.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.durable import write_json
from agent.errors import AgentError
from agent.inference.locate import ModelFile

log = logging.getLogger(__name__)

POINTER = "current.json"
HEX64 = re.compile(r"[0-9a-f]{64}")


def read_pointer(data_dir: Path) -> dict[str, Any] | None:
    """The ``models/current.json`` pointer, or None when there is none (or it is unusable)."""
    path = Path(data_dir) / "models" / POINTER
    try:
        pointer = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("model pointer %s is unreadable (%s); ignored", path, exc)
        return None
    return pointer if isinstance(pointer, dict) else None


def current_model(data_dir: Path) -> ModelFile | None:
    """The model installed by an update, with its verified hash; None to use the configured
    one (no update yet, or the installed file has gone)."""
    pointer = read_pointer(data_dir)
    if pointer is None:
        return None
    path = Path(data_dir) / "models" / str(pointer.get("file"))
    if not path.is_file() or not isinstance(pointer.get("sha256"), str):
        log.warning("installed model %s is missing; using the configured model", path)
        return None
    return ModelFile(path, pointer["sha256"])


def install(
    new_path: Path,
    current_path: Path | None,
    trial: Callable[[Path], None],
    *,
    ts: float = 0.0,
    version: int | None = None,
) -> Path:
    """Trial-load ``new_path`` (a verified ``<sha256>-<name>`` in ``data_dir/models``) with
    ``trial``, then point ``models/current.json`` at it. If the trial fails the pointer is
    left alone, the new file is deleted and AgentError says the update was rolled back.
    ``ts`` and ``version`` are the manifest's, kept in the pointer for the record."""
    models = new_path.parent
    sha256, _, name = new_path.name.partition("-")
    if not HEX64.fullmatch(sha256) or not name:
        raise AgentError(f"{new_path.name} is not an assembled model file (<sha256>-<name>)")
    try:
        trial(new_path)
    except Exception as exc:
        new_path.unlink(missing_ok=True)
        reason = str(exc) if isinstance(exc, AgentError) else f"{type(exc).__name__}: {exc}"
        log.error("model %s failed its trial (%s); rolled back", name, reason)
        raise AgentError(
            f"model {name} failed its trial load, rolled back to "
            f"{'the previous model' if current_path is None else current_path.name}: {reason}"
        ) from None
    pointer = {
        "file": new_path.name,
        "sha256": sha256,
        "name": name,
        "ts": ts,
        "version": version,
        "previous": None if current_path is None else str(current_path),
    }
    write_json(models / POINTER, pointer)
    _prune(models, keep={new_path, current_path})
    log.info("model %s (sha256 %s) installed", name, sha256)
    return new_path


def trial_load(threads: int, context: int) -> Callable[[Path], None]:
    """A trial in a child process: load the file with llama.cpp, a prompt, an embedding and a
    few tokens (AgentError with the reason if the child fails or crashes)."""

    def trial(path: Path) -> None:
        from agent.inference.trial import check

        check(path, threads=threads, context=context)

    return trial


def _prune(models: Path, keep: set[Path | None]) -> None:
    """Delete earlier updates other than the ones kept: disk is scarce on a device."""
    kept = {p.resolve() for p in keep if p is not None}
    for path in models.iterdir():
        if path.is_file() and HEX64.fullmatch(path.name[:64]) and path.resolve() not in kept:
            log.info("removing old model %s", path.name)
            path.unlink(missing_ok=True)
