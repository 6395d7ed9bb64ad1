"""Receiving model updates over MQTT: a signed manifest, chunks checked one by one, a file.

Wire format (an extension of SPEC 3's ``{p}/agents/{agent}/...`` namespace):

* The manifest on ``{p}/agents/{agent}/model/update``: see :mod:`agent.service.manifest`
  (signed with the operator's Ed25519 update key, never with the command key).
* Chunk ``i`` on ``{p}/agents/{agent}/model/chunk/{sha256}/{i}`` (QoS 1): the raw bytes
  ``file[i * chunk_size : (i + 1) * chunk_size]``. A chunk whose SHA-256 is not the one the
  manifest lists for it is dropped and counted; the genuine one, when it comes, is taken.

The agent keeps one transfer at a time in ``data_dir/models/incoming/``: ``<sha256>.part``
(the file, each chunk written at its offset), ``<sha256>.manifest`` (the signed manifest as
received, checked again on resume) and ``<sha256>.json`` (a bitmap of the chunks received).
They survive a restart, so an interrupted transfer resumes: the broker redelivers what the
agent had not acknowledged (persistent session), and the sender may simply push again. A
chunk is acknowledged only after it has been written. When the last chunk arrives, the whole
file's sha256 is checked and the file is renamed to ``data_dir/models/<sha256>-<name>``.

A manifest is accepted only if its ``version`` is above the floor, ``models/floor.json``
(:class:`agent.durable.VersionFloor`), which is raised durably before the transfer
starts: an older manifest, even one correctly signed, is refused, and so cannot abandon the
transfer in progress nor bring back an older model after a restart. The same file announced
again under a newer version resumes the transfer in progress.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from agent.config import Config
from agent.durable import VersionFloor
from agent.errors import AgentError
from agent.inference.locate import sha256_of
from agent.inference.store import read_pointer
from agent.service import updatekey
from agent.service.manifest import MAX_MODEL_BYTES, Manifest, check_shape, parse_manifest

log = logging.getLogger(__name__)

MAX_AGE = 7 * 86400.0  # as long as the broker keeps a session: a queued manifest is older
SKEW = 30.0
FLOOR = "floor.json"
NO_UPDATE_KEY = (
    "model updates are off: they are signed with the operator's update key, not the command "
    "key; make one with `edge-agent keygen --update PATH` on the operator's machine and set "
    "security.update_public_key_file to a copy of PATH.pub"
)


def update_topic(prefix: str, agent: str) -> str:
    return f"{prefix}/agents/{agent}/model/update"


def chunk_topic(prefix: str, agent: str, sha256: str, index: int) -> str:
    return f"{prefix}/agents/{agent}/model/chunk/{sha256}/{index}"


def filters(prefix: str, agent: str) -> list[str]:
    """The topic filters an agent subscribes to for its model updates."""
    return [update_topic(prefix, agent), f"{prefix}/agents/{agent}/model/chunk/+/+"]


def update_key(config: Config) -> updatekey.PublicKey | None:
    """The public update key the config names, or None (logged: model updates are off)."""
    path = config.security.update_public_key_file
    if path is None:
        if config.security.command_key_file is not None:  # an install from before v2 updates
            log.warning("%s", NO_UPDATE_KEY)
        return None
    try:
        return updatekey.load_public(path)
    except AgentError as exc:
        log.error("model updates are off: %s", exc)
        return None


class Assembler:
    """Builds one model file from chunks in ``data_dir/models/incoming``; see the module doc.

    Wire input never raises: ``on_manifest`` returns a reason, ``on_chunk`` logs, counts in
    ``dropped`` and drops (the last refusal is kept in ``refused``). Thread-safe.
    """

    def __init__(
        self,
        data_dir: Path,
        key: updatekey.PublicKey,
        agent: str,
        clock: Callable[[], float] = time.time,
        *,
        max_size: int = MAX_MODEL_BYTES,
        max_age: float = MAX_AGE,
    ) -> None:
        self.models = Path(data_dir) / "models"
        self.incoming = self.models / "incoming"
        self.floor = VersionFloor(self.models / FLOOR)
        self.key = key
        self.agent = agent
        self.clock = clock
        self.max_size = max_size
        self.max_age = max_age
        self.refused: tuple[str, str] | None = None  # (sha256, what) of the last refusal
        self.dropped = 0  # chunks refused: forged, misplaced or of no transfer
        self._lock = threading.Lock()
        self._manifest: Manifest | None = None
        self._received = bytearray()
        self._resume()

    @property
    def manifest(self) -> Manifest | None:
        return self._manifest

    def missing(self) -> list[int]:
        """The chunk indexes of the transfer in progress not received yet."""
        with self._lock:
            m = self._manifest
            return [] if m is None else [i for i in range(m.chunks) if not self._has(i)]

    def on_manifest(self, payload: bytes) -> str | None:
        """Start (or resume) the transfer this manifest announces; the reason if refused."""
        parsed = parse_manifest(payload, self.key, self.agent, self.max_size)
        if isinstance(parsed, str):
            return self._refuse("?", parsed)
        reason = self._check_time(parsed)
        if reason is None:
            with self._lock:
                reason = self._accept(parsed, payload)
        return None if reason is None else self._refuse(parsed.sha256, reason)

    def on_chunk(self, sha256: str, index: int, payload: bytes) -> Path | None:
        """Write one chunk; the verified file in ``data_dir/models`` once all have arrived."""
        with self._lock:
            m = self._manifest
            if m is None or m.sha256 != sha256:
                reason = "no transfer of that file"
            elif not 0 <= index < m.chunks or len(payload) != m.chunk_length(index):
                reason = f"{len(payload)} bytes where no chunk of that length is"
            elif self._has(index):
                return None
            elif not m.chunk_ok(index, payload):
                reason = "not the sha256 the signed manifest lists for it"
            else:
                return self._take(m, index, payload)
            self._drop_chunk(sha256, index, reason)
            return None

    def _take(self, m: Manifest, index: int, payload: bytes) -> Path | None:
        try:
            self._write(m, index, payload)
            return self._finish(m) if self._left() == 0 else None
        except OSError as exc:
            self._drop(f"cannot write {self._part(m)}: {exc.strerror or exc}")
            return None

    # -- internals (called with the lock held) ---------------------------------------------

    def _check_time(self, m: Manifest) -> str | None:
        now = self.clock()
        if m.ts > now + SKEW:
            return f"manifest signed {m.ts - now:.0f} s in the future"
        if m.ts < now - self.max_age:
            return f"manifest signed {now - m.ts:.0f} s ago, more than {self.max_age:.0f} s"
        current = read_pointer(self.models.parent)
        if current is not None and current.get("sha256") == m.sha256:
            return "this model is already installed"
        return None

    def _accept(self, m: Manifest, payload: bytes) -> str | None:
        """Resume the transfer in progress if ``m`` announces the same file, else start one
        if ``m`` is newer than every manifest accepted before."""
        cur = self._manifest
        if cur is not None and m.version < cur.version:
            return f"version {m.version} is not newer than {cur.version}, the transfer in progress"
        same = cur is not None and (cur.sha256, cur.chunk_size, cur.digests) == (
            m.sha256,
            m.chunk_size,
            m.digests,
        )
        if same and cur is not None and m.version == cur.version:
            log.info("model update %s: resuming, %d chunks to go", m.name, self._left())
            return None
        try:
            floor = self.floor.get()
            if m.version <= floor:
                return f"version {m.version} is not newer than {floor}, the last one accepted"
            self.floor.raise_to(m.version, m.sha256)
        except (OSError, AgentError) as exc:
            return f"cannot keep the version floor: {exc}"
        if same:
            self._manifest = m
            self._save_manifest(m, payload)
            log.info("model update %s: version %d, resuming", m.name, m.version)
            return None
        return self._start(m, payload)

    def _start(self, m: Manifest, payload: bytes) -> str | None:
        if self._manifest is not None:
            log.info("model update %s abandoned for %s", self._manifest.name, m.name)
            self._discard(self._manifest)
        try:
            self.incoming.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(self.incoming).free
            if free < m.size:
                return f"{m.size} bytes needed, {free} free in {self.incoming}"
            with self._part(m).open("wb") as fh:
                fh.truncate(m.size)
            self._manifest, self._received = m, bytearray((m.chunks + 7) // 8)
            self._save_manifest(m, payload)
            self._save(m)
        except OSError as exc:
            self._manifest = None
            return f"cannot prepare {self.incoming}: {exc.strerror or exc}"
        log.info(
            "model update %s version %d (%d bytes, %d chunks) started",
            m.name,
            m.version,
            m.size,
            m.chunks,
        )
        return None

    def _write(self, m: Manifest, index: int, payload: bytes) -> None:
        with self._part(m).open("r+b") as fh:
            fh.seek(index * m.chunk_size)
            fh.write(payload)
        self._received[index // 8] |= 1 << (index % 8)
        self._save(m)

    def _finish(self, m: Manifest) -> Path | None:
        part = self._part(m)
        digest = sha256_of(part)
        if digest != m.sha256:  # each chunk was right when written: the disk lost some
            self._recheck(m)
            return None
        final = self.models / f"{m.sha256}-{m.name}"
        part.replace(final)
        self._discard(m)
        log.info("model update %s: %d bytes received and verified", m.name, m.size)
        return final

    def _recheck(self, m: Manifest) -> None:
        """Forget the chunks whose bytes on disk are not theirs, to be received again."""
        lost = []
        with self._part(m).open("rb") as fh:
            for index in range(m.chunks):
                if not m.chunk_ok(index, fh.read(m.chunk_size)):
                    self._received[index // 8] &= ~(1 << (index % 8))
                    lost.append(index)
        if not lost:  # every chunk is as signed but the whole is not: the manifest lies
            self._drop("the chunks do not make the file the manifest's sha256 names")
            return
        self._save(m)
        log.warning("model update %s: chunks %s were lost on disk; push again", m.name, lost)

    def _drop_chunk(self, sha256: str, index: int, reason: str) -> None:
        """Count and log a chunk that is not taken; the transfer goes on without it. A flood
        is logged (and reported) at the 1st to 16th drop, then at powers of two."""
        self.dropped += 1
        if self.dropped > 16 and self.dropped & (self.dropped - 1):
            return
        log.warning(
            "model chunk %r/%d dropped (%d so far): %s", sha256[:64], index, self.dropped, reason
        )
        self.refused = (sha256[:64], f"chunk {index} dropped: {reason}")

    def _drop(self, reason: str) -> None:
        m = self._manifest
        assert m is not None
        self._discard(m)
        self._refuse(m.sha256, reason)

    def _refuse(self, sha256: str, reason: str) -> str:
        log.warning("model update %s refused: %s; the old model keeps running", sha256, reason)
        self.refused = (sha256, f"refused: {reason}")
        return reason

    def _discard(self, m: Manifest) -> None:
        for path in (self._part(m), self._meta(m), self._signed(m)):
            path.unlink(missing_ok=True)
        self._manifest, self._received = None, bytearray()

    def _has(self, index: int) -> bool:
        return bool(self._received[index // 8] >> (index % 8) & 1)

    def _left(self) -> int:
        m = self._manifest
        return 0 if m is None else m.chunks - sum(bin(b).count("1") for b in self._received)

    def _part(self, m: Manifest) -> Path:
        return self.incoming / f"{m.sha256}.part"

    def _meta(self, m: Manifest) -> Path:
        return self.incoming / f"{m.sha256}.json"

    def _signed(self, m: Manifest) -> Path:
        return self.incoming / f"{m.sha256}.manifest"

    def _save(self, m: Manifest) -> None:
        state = {"received": base64.b64encode(self._received).decode()}
        tmp = self._meta(m).with_name(f"{m.sha256}.json.tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self._meta(m))

    def _save_manifest(self, m: Manifest, payload: bytes) -> None:
        tmp = self._signed(m).with_name(f"{m.sha256}.manifest.tmp")
        tmp.write_bytes(payload)
        tmp.replace(self._signed(m))

    def _resume(self) -> None:
        """Pick up a transfer an earlier run left in ``incoming`` (its manifest checked again)."""
        for meta in sorted(self.incoming.glob("*.json")) if self.incoming.is_dir() else []:
            m: Manifest | str = "extra"
            try:
                if self._manifest is None:
                    m = parse_manifest(
                        meta.with_suffix(".manifest").read_bytes(),
                        self.key,
                        self.agent,
                        self.max_size,
                    )
                received = bytearray(base64.b64decode(json.loads(meta.read_text())["received"]))
            except (OSError, ValueError, TypeError, KeyError) as exc:
                m = str(exc)
            ok = isinstance(m, Manifest) and check_shape(m, self.max_size) is None
            if not isinstance(m, Manifest) or not ok or not self._fits(m, meta, received):
                log.warning(
                    "model update state %s is unusable or extra (%s); removed",
                    meta.name,
                    m if isinstance(m, str) else "size",
                )
                for suffix in (".json", ".part", ".manifest"):
                    meta.with_suffix(suffix).unlink(missing_ok=True)
                continue
            self._manifest, self._received = m, received
            log.info("model update %s: resuming, %d chunks to go", m.name, self._left())

    def _fits(self, m: Manifest, meta: Path, received: bytearray) -> bool:
        try:
            size = meta.with_suffix(".part").stat().st_size
        except OSError:
            return False
        return len(received) == (m.chunks + 7) // 8 and size == m.size and m.sha256 == meta.stem
