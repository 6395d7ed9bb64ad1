"""Model updates over MQTT: a signed manifest, raw chunks, a verified file, a trial, a swap.

Wire format (an extension of SPEC 3's ``{p}/agents/{agent}/...`` namespace):

* Manifest on ``{p}/agents/{agent}/model/update`` (QoS 1, not retained), a JSON object::

    {"name": "smollm2-q8_0.gguf", "size": 145000000, "sha256": "<64 hex>",
     "chunk_size": 262144, "chunks": 554, "ts": 1700000000.0, "sig": "<64 hex>"}

  ``sig`` is :func:`agent.policy.signing.sign` (HMAC-SHA256 over the canonical JSON of the
  other fields) under the site command key. ``name`` is a bare file name; ``chunks`` must
  be ``ceil(size / chunk_size)``; ``ts`` is when it was signed.
* Chunk ``i`` on ``{p}/agents/{agent}/model/chunk/{sha256}/{i}`` (QoS 1): the raw bytes
  ``file[i * chunk_size : (i + 1) * chunk_size]``.

The agent keeps one transfer at a time in ``data_dir/models/incoming/``: ``<sha256>.part``
(the file, each chunk written at its offset) and ``<sha256>.json`` (the manifest and a
bitmap of the chunks received). Both survive a restart, so an interrupted transfer resumes:
the broker redelivers what the agent had not acknowledged (persistent session), and the
sender may simply push again. A chunk is acknowledged only after it has been written.
When the last chunk arrives, size and sha256 are checked and the file is renamed to
``data_dir/models/<sha256>-<name>``; a mismatch deletes it and logs why.

:func:`install` then loads the file once as a trial and points ``data_dir/models/current.json``
at it: a small JSON pointer ``{"file", "sha256", "name", "ts", "previous"}`` replaced with
``os.replace``. A pointer rather than a symlink because it also carries the verified hash
(no rehashing of a large file at start), the manifest time (an older manifest, even one
correctly signed, is refused: no downgrade by replay) and the model it replaced. The
pointer moves only after a successful trial, so a trial that fails, or even crashes the
process, leaves the old model in place.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import queue
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from agent.config import MqttSection
from agent.errors import AgentError
from agent.inference.locate import ModelFile, sha256_of
from agent.mqtt import Message, MqttClient
from agent.numbers import finite_number
from agent.policy.signing import sign, verify

log = logging.getLogger(__name__)

MAX_MODEL_BYTES = 16 << 30
MIN_CHUNK = 1 << 10
MAX_CHUNK = 8 << 20
MAX_NAME = 200
MAX_AGE = 7 * 86400.0  # as long as the broker keeps a session: a queued manifest is older
SKEW = 30.0
POINTER = "current.json"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MANIFEST_FIELDS: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "size": (int,),
    "sha256": (str,),
    "chunk_size": (int,),
    "chunks": (int,),
    "ts": (int, float),
    "sig": (str,),
}

Progress = Callable[[int, int], None]  # (chunks acknowledged, chunks in all)


def update_topic(prefix: str, agent: str) -> str:
    return f"{prefix}/agents/{agent}/model/update"


def chunk_topic(prefix: str, agent: str, sha256: str, index: int) -> str:
    return f"{prefix}/agents/{agent}/model/chunk/{sha256}/{index}"


def filters(prefix: str, agent: str) -> list[str]:
    """The topic filters an agent subscribes to for its model updates."""
    return [update_topic(prefix, agent), f"{prefix}/agents/{agent}/model/chunk/+/+"]


@dataclass(frozen=True, slots=True)
class Manifest:
    name: str
    size: int
    sha256: str
    chunk_size: int
    chunks: int
    ts: float

    def chunk_length(self, index: int) -> int:
        if index < self.chunks - 1:
            return self.chunk_size
        return self.size - (self.chunks - 1) * self.chunk_size

    def signed(self, key: bytes) -> dict[str, object]:
        fields: dict[str, object] = asdict(self)
        fields["sig"] = sign(fields, key)
        return fields


def make_manifest(path: Path, *, chunk_size: int, now: float) -> Manifest:
    """The manifest for sending ``path`` in chunks of ``chunk_size`` bytes (sign it to send)."""
    size = path.stat().st_size
    manifest = Manifest(
        path.name, size, sha256_of(path), chunk_size, max(1, math.ceil(size / chunk_size)), now
    )
    reason = _check_shape(manifest, MAX_MODEL_BYTES)
    if reason is not None:
        raise AgentError(f"cannot send {path}: {reason}")
    return manifest


def parse_manifest(payload: bytes, key: bytes, max_size: int = MAX_MODEL_BYTES) -> Manifest | str:
    """The manifest if it is well formed and signed under ``key``, else the reason why not."""
    fields = _decode(payload)
    if fields is None:
        return "malformed manifest"
    if not verify(fields, key):
        return "bad signature"
    ts = finite_number(fields["ts"])
    if ts is None:
        return "malformed manifest"
    manifest = Manifest(
        cast(str, fields["name"]),
        cast(int, fields["size"]),
        cast(str, fields["sha256"]),
        cast(int, fields["chunk_size"]),
        cast(int, fields["chunks"]),
        ts,
    )
    return _check_shape(manifest, max_size) or manifest


def _decode(payload: bytes) -> dict[str, object] | None:
    """The JSON object with exactly the manifest fields and types, else None."""
    try:
        fields = json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None
    if not isinstance(fields, dict) or set(fields) != set(_MANIFEST_FIELDS):
        return None
    for name, types in _MANIFEST_FIELDS.items():
        value = fields[name]
        if isinstance(value, bool) or not isinstance(value, types):
            return None
    return fields


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _check_shape(m: Manifest, max_size: int) -> str | None:
    if not m.name or len(m.name) > MAX_NAME or m.name in (".", ".."):
        return f"bad model name {m.name[:MAX_NAME]!r}"
    if any(c in m.name for c in "/\\\0") or not m.name.isprintable():
        return f"model name {m.name[:MAX_NAME]!r} must be a bare file name"
    if not _HEX64.fullmatch(m.sha256):
        return "sha256 must be 64 lowercase hex digits"
    if not 1 <= m.size <= max_size:
        return f"size {m.size} is outside 1..{max_size} bytes"
    if not MIN_CHUNK <= m.chunk_size <= MAX_CHUNK:
        return f"chunk_size {m.chunk_size} is outside {MIN_CHUNK}..{MAX_CHUNK} bytes"
    if m.chunks != math.ceil(m.size / m.chunk_size):
        return f"{m.chunks} chunks do not fit size {m.size} and chunk_size {m.chunk_size}"
    return None


# -- receiving ------------------------------------------------------------------------------


class Assembler:
    """Builds one model file from chunks in ``data_dir/models/incoming``; see the module doc.

    Wire input never raises: ``on_manifest`` returns a reason, ``on_chunk`` logs and drops
    (the reason of the last refused transfer is kept in ``refused``). Thread-safe.
    """

    def __init__(
        self,
        data_dir: Path,
        key: bytes,
        clock: Callable[[], float] = time.time,
        *,
        max_size: int = MAX_MODEL_BYTES,
        max_age: float = MAX_AGE,
    ) -> None:
        self.models = Path(data_dir) / "models"
        self.incoming = self.models / "incoming"
        self.key = key
        self.clock = clock
        self.max_size = max_size
        self.max_age = max_age
        self.refused: tuple[str, str] | None = None  # (sha256, reason) of the last refusal
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
        parsed = parse_manifest(payload, self.key, self.max_size)
        if isinstance(parsed, str):
            return self._refuse("?", parsed)
        reason = self._check_time(parsed)
        if reason is not None:
            return self._refuse(parsed.sha256, reason)
        with self._lock:
            if self._manifest is not None and self._manifest.sha256 == parsed.sha256:
                log.info("model update %s: resuming, %d chunks to go", parsed.name, self._left())
                return None
            reason = self._start(parsed)
        return None if reason is None else self._refuse(parsed.sha256, reason)

    def on_chunk(self, sha256: str, index: int, payload: bytes) -> Path | None:
        """Write one chunk; the verified file in ``data_dir/models`` once all have arrived."""
        with self._lock:
            m = self._manifest
            if m is None or m.sha256 != sha256:
                log.warning("model chunk %s/%d: no transfer of that file; dropped", sha256, index)
                return None
            if not 0 <= index < m.chunks or len(payload) != m.chunk_length(index):
                log.warning(
                    "model chunk %s/%d: %d bytes where %s expected; dropped",
                    sha256,
                    index,
                    len(payload),
                    m.chunk_length(index) if 0 <= index < m.chunks else "no chunk is",
                )
                return None
            if self._has(index):
                return None
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
        if current is not None and m.ts <= float(current.get("ts") or 0):
            return "manifest is older than the installed model's"
        return None

    def _start(self, m: Manifest) -> str | None:
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
            self._save(m)
        except OSError as exc:
            self._manifest = None
            return f"cannot prepare {self.incoming}: {exc.strerror or exc}"
        log.info("model update %s (%d bytes, %d chunks) started", m.name, m.size, m.chunks)
        return None

    def _write(self, m: Manifest, index: int, payload: bytes) -> None:
        with self._part(m).open("r+b") as fh:
            fh.seek(index * m.chunk_size)
            fh.write(payload)
        self._received[index // 8] |= 1 << (index % 8)
        self._save(m)

    def _finish(self, m: Manifest) -> Path | None:
        part = self._part(m)
        size = part.stat().st_size
        digest = sha256_of(part) if size == m.size else ""
        if size != m.size or digest != m.sha256:
            found = f"{size} bytes" if size != m.size else f"sha256 {digest}"
            self._drop(f"the assembled file has {found}, not what the manifest says")
            return None
        final = self.models / f"{m.sha256}-{m.name}"
        os.replace(part, final)
        self._discard(m)
        log.info("model update %s: %d bytes received and verified", m.name, m.size)
        return final

    def _drop(self, reason: str) -> None:
        m = self._manifest
        assert m is not None
        self._discard(m)
        self._refuse(m.sha256, reason)

    def _refuse(self, sha256: str, reason: str) -> str:
        log.warning("model update %s refused: %s; the old model keeps running", sha256, reason)
        self.refused = (sha256, reason)
        return reason

    def _discard(self, m: Manifest) -> None:
        self._part(m).unlink(missing_ok=True)
        self._meta(m).unlink(missing_ok=True)
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

    def _save(self, m: Manifest) -> None:
        state = {"manifest": asdict(m), "received": base64.b64encode(self._received).decode()}
        _write_json(self._meta(m), state)

    def _resume(self) -> None:
        """Pick up a transfer an earlier run left in ``incoming``."""
        for meta in sorted(self.incoming.glob("*.json")) if self.incoming.is_dir() else []:
            try:
                state = json.loads(meta.read_text())
                m = Manifest(**state["manifest"])
                received = bytearray(base64.b64decode(state["received"]))
                ok = _check_shape(m, self.max_size) is None and len(received) == (m.chunks + 7) // 8
                ok = ok and self._part(m).stat().st_size == m.size
            except (OSError, ValueError, TypeError, KeyError):
                ok = False
            if not ok or self._manifest is not None:
                log.warning("model update state %s is unusable or extra; removed", meta.name)
                meta.unlink(missing_ok=True)
                meta.with_suffix(".part").unlink(missing_ok=True)
                continue
            self._manifest, self._received = m, received
            log.info("model update %s: resuming, %d chunks to go", m.name, self._left())


class Receiver:
    """Runs an Assembler on its own thread so paho's network thread never writes files.

    ``handle(msg)`` takes the model-update messages (False for any other topic); each is
    acknowledged once written. ``on_assembled(path, manifest)`` runs on this thread with a
    verified file; ``on_refused(sha256, reason)`` when a manifest or a transfer is refused.
    """

    def __init__(
        self,
        assembler: Assembler,
        prefix: str,
        agent: str,
        *,
        ack: Callable[[Message], None],
        on_assembled: Callable[[Path, Manifest], None],
        on_refused: Callable[[str, str], None] | None = None,
    ) -> None:
        self.assembler = assembler
        self.topic_update = update_topic(prefix, agent)
        self._chunk_prefix = f"{prefix}/agents/{agent}/model/chunk/"
        self._ack = ack
        self._on_assembled = on_assembled
        self._on_refused = on_refused
        self._queue: queue.Queue[Message | None] = queue.Queue()
        self._thread = threading.Thread(target=self._main, name="model-update", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def handle(self, msg: Message) -> bool:
        if msg.topic == self.topic_update or msg.topic.startswith(self._chunk_prefix):
            self._queue.put(msg)
            return True
        return False

    def _main(self) -> None:
        while (msg := self._queue.get()) is not None:
            try:
                self._process(msg)
            except Exception:  # never let one message end model updates
                log.exception("model update message on %s failed", msg.topic)
            self._ack(msg)

    def _process(self, msg: Message) -> None:
        before = self.assembler.refused
        if msg.topic == self.topic_update:
            self.assembler.on_manifest(msg.payload)
        else:
            sha256, _, index = msg.topic.removeprefix(self._chunk_prefix).partition("/")
            if not (index.isascii() and index.isdigit()):
                log.warning("model chunk topic %s has no chunk index; dropped", msg.topic)
                return
            manifest = self.assembler.manifest
            path = self.assembler.on_chunk(sha256, int(index), msg.payload)
            if path is not None and manifest is not None:
                self._on_assembled(path, manifest)
        refused = self.assembler.refused
        if refused is not None and refused is not before and self._on_refused is not None:
            self._on_refused(*refused)


# -- installing -----------------------------------------------------------------------------


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
) -> Path:
    """Trial-load ``new_path`` (a verified ``<sha256>-<name>`` in ``data_dir/models``) with
    ``trial``, then point ``models/current.json`` at it. If the trial fails the pointer is
    left alone, the new file is deleted and AgentError says the update was rolled back.
    ``ts`` is the manifest's: later manifests must be newer (no downgrade by replay)."""
    models = new_path.parent
    sha256, _, name = new_path.name.partition("-")
    if not _HEX64.fullmatch(sha256) or not name:
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
        "previous": None if current_path is None else str(current_path),
    }
    _write_json(models / POINTER, pointer)
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
        if path.is_file() and _HEX64.fullmatch(path.name[:64]) and path.resolve() not in kept:
            log.info("removing old model %s", path.name)
            path.unlink(missing_ok=True)


def _write_json(path: Path, obj: Mapping[str, object]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, separators=(",", ":")))
    os.replace(tmp, path)


# -- sending ---------------------------------------------------------------------------------


def push(
    path: Path,
    host: str,
    port: int,
    prefix: str,
    agent: str,
    key: bytes,
    chunk_size: int = 256 * 1024,
    progress: Progress | None = None,
    *,
    mqtt: MqttSection | None = None,
    window: int = 16,
    timeout: float = 30.0,
    clock: Callable[[], float] = time.time,
) -> Manifest:
    """Send ``path`` to ``agent``: the signed manifest, then every chunk at QoS 1, at most
    ``window`` unacknowledged at a time. ``mqtt`` lends its TLS and login settings. Returns
    the manifest; AgentError if the broker cannot be reached or stops acknowledging."""
    manifest = make_manifest(Path(path), chunk_size=chunk_size, now=clock())
    client = _sender(mqtt or MqttSection(), host, port, prefix)
    client.start()
    try:
        if not client.wait_connected(timeout):
            raise AgentError(f"cannot reach the broker at {host}:{port}: {client.last_error}")
        payload = json.dumps(manifest.signed(key), separators=(",", ":")).encode()
        if not client.publish_wait(update_topic(prefix, agent), payload, 1, timeout=timeout):
            raise AgentError("the broker did not acknowledge the manifest")
        topic = chunk_topic(prefix, agent, manifest.sha256, 0)[: -len("0")]
        _send_chunks(client, Path(path), manifest, topic, window, timeout, progress)
    finally:
        client.stop()
    return manifest


def _sender(base: MqttSection, host: str, port: int, prefix: str) -> MqttClient:
    cfg = base.model_copy(
        update={
            "host": host,
            "port": port,
            "prefix": prefix,
            "subscriptions": [],
            "session_expiry": 0.0,
        }
    )
    return MqttClient(
        cfg,
        f"edge-agent-push-{uuid.uuid4().hex[:8]}",
        will=None,
        on_message=lambda _: None,
        manual_ack=False,
    )


def _send_chunks(
    client: MqttClient,
    path: Path,
    manifest: Manifest,
    topic: str,
    window: int,
    timeout: float,
    progress: Progress | None,
) -> None:
    """Publish every chunk (``topic`` + index), waiting for the oldest once ``window`` are
    unacknowledged: memory stays at ``window`` chunks whatever the file's size."""
    pending: list[Any] = []
    done, chunks = 0, manifest.chunks
    with path.open("rb") as fh:
        for index in range(chunks):
            pending.append(client.publish(f"{topic}{index}", fh.read(manifest.chunk_size), 1))
            while len(pending) >= window or (index == chunks - 1 and pending):
                _wait_acked(pending.pop(0), timeout)
                done += 1
                if progress is not None:
                    progress(done, chunks)


def _wait_acked(info: Any, timeout: float) -> None:
    try:
        info.wait_for_publish(timeout)
    except (RuntimeError, ValueError) as exc:
        raise AgentError(f"a chunk could not be sent: {exc}") from None
    if not info.is_published():
        raise AgentError(f"the broker did not acknowledge a chunk within {timeout} s")
