"""Where tuned adapters live, and installing one: the model store's swap, per tuning target.

Each tuning target (``policy-<name>`` or ``intents``) has its own directory
``data_dir/tuned/<target>/models/``, holding ``<sha256>-<target>.gguf`` files and the same
``current.json`` pointer :mod:`agent.inference.store` keeps for the whole model: the file is
copied in under a temporary name and renamed, trial-loaded, and only then does the
pointer move (``os.replace``), so an interrupted or failed install leaves the previous
adapter (or none) in use. ``record-<sha256>.json`` beside it says what the adapter was
trained on and how it measured; an adapter is used only on the base model it was trained
for (a model update makes it stale, and the policy falls back to the plain model).

Nothing here needs the ``tune`` extra: the runtime imports it to find adapters.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agent.errors import AgentError
from agent.inference.store import current_model, install

log = logging.getLogger(__name__)

INTENTS = "intents"


def policy_target(name: str) -> str:
    return f"policy-{name}"


def tune_dir(data_dir: Path, target: str) -> Path:
    return Path(data_dir) / "tuned" / target


def record_path(data_dir: Path, target: str, sha256: str) -> Path:
    return tune_dir(data_dir, target) / "models" / f"record-{sha256}.json"


def installed(data_dir: Path, target: str) -> tuple[Path, dict[str, Any]] | None:
    """The installed adapter of ``target`` and its record, or None."""
    found = current_model(tune_dir(data_dir, target))
    if found is None:
        return None
    try:
        record = json.loads(record_path(data_dir, target, found.sha256).read_text())
    except (OSError, ValueError) as exc:
        log.warning("tuned adapter %s has no readable record (%s); ignored", found.path, exc)
        return None
    return (found.path, record) if isinstance(record, dict) else None


def adapter_for(data_dir: Path, target: str, base_sha256: str | None) -> Path | None:
    """The adapter to use for ``target`` on the base model with ``base_sha256``, if any."""
    found = installed(data_dir, target)
    if found is None:
        return None
    path, record = found
    if base_sha256 is not None and record.get("base_sha256") != base_sha256:
        log.warning(
            "tuned adapter %s was trained for another base model (%s); not used",
            path.name,
            str(record.get("base_sha256"))[:12],
        )
        return None
    return path


def install_adapter(
    data_dir: Path,
    target: str,
    candidate: Path,
    record: Mapping[str, Any],
    trial: Callable[[Path], None],
) -> Path:
    """Copy ``candidate`` in, trial-load it and point ``target`` at it; see the module doc."""
    sha256 = str(record["sha256"])
    models = tune_dir(data_dir, target) / "models"
    models.mkdir(parents=True, exist_ok=True)
    before = installed(data_dir, target)
    dest = models / f"{sha256}-{target}.gguf"
    tmp = models / f".{sha256}.tmp"
    shutil.copyfile(candidate, tmp)
    os.replace(tmp, dest)
    _write_json(record_path(data_dir, target, sha256), record)
    try:
        return install(dest, None if before is None else before[0], trial, ts=time.time())
    except AgentError:
        record_path(data_dir, target, sha256).unlink(missing_ok=True)
        raise


def _write_json(path: Path, obj: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)
