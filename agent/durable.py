"""Small state files that survive a crash: fsync, atomic rename, fsync of the directory.

:class:`VersionFloor` is the model-update downgrade floor: the highest manifest ``version`` an
agent has accepted. It is raised (durably) before a transfer starts, so neither a replayed
older manifest nor a power cut at the wrong moment can bring an older model back.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from agent.errors import AgentError

log = logging.getLogger(__name__)


def write_json(path: Path, obj: Mapping[str, object]) -> None:
    """Replace ``path`` with ``obj`` as JSON so that after a crash it is the old or the new
    content, whole, and the new one once this returns (OSError if it cannot)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as fh:
        fh.write(json.dumps(obj, separators=(",", ":")))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself
    finally:
        os.close(fd)


class VersionFloor:
    """The highest model-update version accepted, kept in ``path`` (a JSON object)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def get(self) -> int:
        """The floor (0 before any update). An unreadable file raises AgentError: guessing
        low would reopen downgrades."""
        try:
            state = json.loads(self.path.read_text())
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            raise AgentError(f"model-update floor {self.path} is unreadable: {exc}") from None
        version = state.get("version") if isinstance(state, dict) else None
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise AgentError(f"model-update floor {self.path} has no usable version")
        return version

    def raise_to(self, version: int, sha256: str) -> None:
        """Make ``version`` the floor (it must be higher) before this returns."""
        if version <= self.get():
            raise AgentError(f"version {version} is not above the floor {self.get()}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, {"version": version, "sha256": sha256})
        log.info("model-update floor is now version %d", version)
