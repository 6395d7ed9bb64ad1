"""An actuator's nonce memory that survives a restart (SPEC 4: a nonce is remembered until its
command expires), as a real firmware would keep it: a small file in its state directory.

The file holds only the nonces of commands not yet expired (with the safety layer's limits,
a handful) and ``floor``: the time since which the memory is complete. It is rewritten after
every accepted command, atomically (a temporary file, fsync, rename, fsync of the directory),
so a power cut leaves the old or the new memory, never half of one. An actuator whose memory
is missing or unreadable starts a new one with ``floor`` = its boot time, and refuses every
command made before the floor: it cannot tell whether it has seen it.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

from agent.policy.signing import NonceMemory

log = logging.getLogger(__name__)


class StoredNonces(NonceMemory):
    """A :class:`NonceMemory` with a floor, kept in ``path`` (None: in memory only)."""

    def __init__(self, path: Path | None, now: float, max_size: int = 4096) -> None:
        super().__init__(max_size)
        self.path = path
        self.floor = now
        self._kept: dict[str, float] = {}
        if path is not None:
            self._load(path, now)

    def _load(self, path: Path, now: float) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            floor, kept = float(data["floor"]), dict(data["nonces"])
            entries = [(str(n), float(e)) for n, e in kept.items()]
        except FileNotFoundError:
            log.info("%s: no nonce memory yet; commands made before now are refused", path)
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("%s: nonce memory unreadable (%s); commands made before now are "
                        "refused", path, exc)
            return
        if not math.isfinite(floor) or floor > now:
            return
        self.floor = floor
        for nonce, expires in entries:
            if math.isfinite(expires) and expires >= now:
                self.add(nonce, expires, now)

    def add(self, nonce: str, expires: float, now: float) -> bool:
        if not super().add(nonce, expires, now):
            return False
        self._kept[nonce] = expires
        return True

    def save(self, now: float) -> None:
        """Write the unexpired nonces; raises OSError if they cannot be kept."""
        self._kept = {n: e for n, e in self._kept.items() if e >= now}
        if self.path is None:
            return
        data = json.dumps({"floor": self.floor, "nonces": self._kept}).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
