"""The model-update manifest (v2): what is sent, to whom, in which chunks, signed by whom.

Published on ``{p}/agents/{agent}/model/update`` (QoS 1, not retained), a JSON object::

    {"type": "edge-agent/model-update/v2", "agent": "pi-livingroom",
     "name": "smollm2-q8_0.gguf", "size": 145000000, "sha256": "<64 hex>",
     "chunk_size": 262144, "chunks": 554, "chunk_sha256": "<base64>",
     "version": 1764370000123, "ts": 1764370000.1, "key": "<16 hex>", "sig": "<128 hex>"}

``sig`` is the Ed25519 signature, by the operator's update key, of the canonical JSON of every
other field (as SPEC 4: sorted keys, no spaces, UTF-8). ``chunk_sha256`` is the base64 of the
chunks' SHA-256 digests, 32 bytes each in chunk order, so every chunk is checked as it arrives.
``version`` is an integer the agent keeps as a floor: a manifest is accepted only if its
version is above every version accepted before (``model push`` uses the time in milliseconds
unless told otherwise). ``agent`` names the one agent it is for; ``key`` is the id of the key
that signed (:func:`agent.service.updatekey.key_id`), to say which key was used when it is
not the one the agent trusts. ``name`` is a bare file name; ``ts`` is when it was signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from agent.errors import AgentError
from agent.inference.store import HEX64
from agent.numbers import finite_number
from agent.policy.signing import canonical_json
from agent.service import updatekey

TYPE = "edge-agent/model-update/v2"
MAX_MODEL_BYTES = 16 << 30
MIN_CHUNK = 1 << 10
MAX_CHUNK = 1 << 20  # a chunk must pass the site broker's message_size_limit (1 MiB)
MAX_CHUNKS = 1 << 14  # the digests of 16384 chunks: a manifest of ~700 KB
DEFAULT_CHUNK = 256 * 1024
MAX_VERSION = (1 << 53) - 1  # exact in every JSON reader
MAX_NAME = 200
_FIELDS: dict[str, tuple[type, ...]] = {
    "type": (str,),
    "agent": (str,),
    "name": (str,),
    "size": (int,),
    "sha256": (str,),
    "chunk_size": (int,),
    "chunks": (int,),
    "chunk_sha256": (str,),
    "version": (int,),
    "ts": (int, float),
    "key": (str,),
    "sig": (str,),
}
OLD_SCHEME = (
    f"not a {TYPE} manifest: model updates signed with the command key are no longer "
    "accepted; sign with the operator's update key (edge-agent model push --key)"
)


@dataclass(frozen=True, slots=True)
class Manifest:
    agent: str
    name: str
    size: int
    sha256: str
    chunk_size: int
    chunks: int
    digests: bytes  # chunks * 32 bytes: the SHA-256 of each chunk
    version: int
    ts: float

    def chunk_length(self, index: int) -> int:
        if index < self.chunks - 1:
            return self.chunk_size
        return self.size - (self.chunks - 1) * self.chunk_size

    def chunk_digest(self, index: int) -> bytes:
        return self.digests[index * 32 : (index + 1) * 32]

    def chunk_ok(self, index: int, payload: bytes) -> bool:
        return hashlib.sha256(payload).digest() == self.chunk_digest(index)

    def fields(self) -> dict[str, object]:
        """The unsigned JSON fields but ``key`` and ``sig``."""
        return {
            "type": TYPE,
            "agent": self.agent,
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "chunk_size": self.chunk_size,
            "chunks": self.chunks,
            "chunk_sha256": base64.b64encode(self.digests).decode("ascii"),
            "version": self.version,
            "ts": self.ts,
        }

    def signed(self, key: updatekey.PrivateKey) -> dict[str, object]:
        fields = self.fields() | {"key": updatekey.key_id(key.public_key())}
        return fields | {"sig": updatekey.sign(key, canonical_json(fields))}


def chunk_size_for(size: int, preferred: int = DEFAULT_CHUNK) -> int:
    """``preferred``, or the smallest whole KiB that keeps a file of ``size`` bytes within
    MAX_CHUNKS chunks."""
    needed = math.ceil(math.ceil(size / MAX_CHUNKS) / 1024) * 1024
    return max(preferred, needed)


def make_manifest(path: Path, *, agent: str, version: int, chunk_size: int, now: float) -> Manifest:
    """The manifest for sending ``path`` to ``agent`` (sign it to send); AgentError if the
    file or the numbers do not fit the limits."""
    whole, digests, size = hashlib.sha256(), bytearray(), 0
    try:
        with Path(path).open("rb") as fh:
            while chunk := fh.read(chunk_size):
                whole.update(chunk)
                digests += hashlib.sha256(chunk).digest()
                size += len(chunk)
    except OSError as exc:
        raise AgentError(f"cannot read {path}: {exc.strerror or exc}") from None
    chunks = max(1, math.ceil(size / chunk_size))
    m = Manifest(
        agent,
        Path(path).name,
        size,
        whole.hexdigest(),
        chunk_size,
        chunks,
        bytes(digests),
        version,
        now,
    )
    reason = check_shape(m, MAX_MODEL_BYTES)
    if reason is not None:
        raise AgentError(f"cannot send {path}: {reason}")
    return m


def parse_manifest(
    payload: bytes, key: updatekey.PublicKey, agent: str, max_size: int = MAX_MODEL_BYTES
) -> Manifest | str:
    """The manifest if it is well formed, for ``agent`` and signed with ``key``, else the
    reason why not."""
    fields = _decode(payload)
    if isinstance(fields, str):
        return fields
    trusted = updatekey.key_id(key)
    if fields["key"] != trusted:
        return f"signed by update key {str(fields['key'])[:16]!r}; this agent trusts {trusted}"
    unsigned = {k: v for k, v in fields.items() if k != "sig"}
    if not updatekey.verify(key, canonical_json(unsigned), str(fields["sig"])):
        return "bad signature"
    if fields["agent"] != agent:
        return f"manifest is for agent {str(fields['agent'])[:64]!r}"
    ts = finite_number(fields["ts"])
    try:
        digests = base64.b64decode(str(fields["chunk_sha256"]), validate=True)
    except (ValueError, binascii.Error):
        return "malformed manifest"
    if ts is None:
        return "malformed manifest"
    number = cast(dict[str, int], fields)
    m = Manifest(
        agent,
        str(fields["name"]),
        number["size"],
        str(fields["sha256"]),
        number["chunk_size"],
        number["chunks"],
        digests,
        number["version"],
        ts,
    )
    return check_shape(m, max_size) or m


def _decode(payload: bytes) -> dict[str, object] | str:
    """The JSON object with exactly the manifest fields and types, else the reason."""
    try:
        fields = json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return "malformed manifest"
    if not isinstance(fields, dict):
        return "malformed manifest"
    if fields.get("type") != TYPE:
        return OLD_SCHEME if "type" not in fields else f"not a {TYPE} manifest"
    if set(fields) != set(_FIELDS):
        return "malformed manifest"
    for name, types in _FIELDS.items():
        value = fields[name]
        if isinstance(value, bool) or not isinstance(value, types):
            return "malformed manifest"
    return fields


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def check_shape(m: Manifest, max_size: int) -> str | None:
    """Why the numbers of ``m`` do not fit together or the limits (None if they do)."""
    if not m.name or len(m.name) > MAX_NAME or m.name in (".", ".."):
        return f"bad model name {m.name[:MAX_NAME]!r}"
    if any(c in m.name for c in "/\\\0") or not m.name.isprintable():
        return f"model name {m.name[:MAX_NAME]!r} must be a bare file name"
    if not HEX64.fullmatch(m.sha256):
        return "sha256 must be 64 lowercase hex digits"
    if not 1 <= m.size <= max_size:
        return f"size {m.size} is outside 1..{max_size} bytes"
    if not MIN_CHUNK <= m.chunk_size <= MAX_CHUNK:
        return f"chunk_size {m.chunk_size} is outside {MIN_CHUNK}..{MAX_CHUNK} bytes"
    if m.chunks != math.ceil(m.size / m.chunk_size):
        return f"{m.chunks} chunks do not fit size {m.size} and chunk_size {m.chunk_size}"
    if m.chunks > MAX_CHUNKS:
        return f"{m.chunks} chunks are more than {MAX_CHUNKS}: use larger chunks"
    if len(m.digests) != 32 * m.chunks:
        return f"chunk_sha256 holds {len(m.digests)} bytes, not 32 for each of {m.chunks} chunks"
    if not 1 <= m.version <= MAX_VERSION:
        return f"version {m.version} is outside 1..{MAX_VERSION}"
    return None
