"""Messages larger than a broker takes, sent in parts and put together again.

Extension of SPEC (compatible: new topics only). A message for topic ``T`` that is longer than
``limit`` bytes travels as parts on ``T/part/0`` … ``T/part/{n-1}``, each::

    b"EAF1" | sha256 of the whole message (32 bytes) | index (u32, big-endian) | n (u32) | bytes

Short messages go on ``T`` unchanged, so a receiver subscribes to ``T`` and ``T/part/+``.
The receiver keeps parts by the digest until all ``n`` arrived, checks the digest of the
whole, and hands it on as if it had come on ``T``; parts of a message that never completes are
dropped oldest first once ``max_pending`` messages or ``max_bytes`` are held. ``max_bytes``
holds for one message too: a message that announces (or grows to) more than that is dropped
and counted, and its later parts are ignored. A retained
message in parts leaves its parts retained; the now stale whole message on ``T`` is cleared.

128 KiB parts suit the strictest brokers in use (AWS IoT Core: 128 KB a message); Mosquitto
takes up to 256 MB unless ``message_size_limit`` says otherwise.
"""

from __future__ import annotations

import hashlib
import struct
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.errors import AgentError

MAGIC = b"EAF1"
HEADER = struct.Struct(">4s32sII")
DEFAULT_LIMIT = 128 * 1024
MAX_PARTS = 1 << 16


def split(payload: bytes, limit: int = DEFAULT_LIMIT) -> list[bytes]:
    """The parts of ``payload``, each at most ``limit`` bytes with its header."""
    room = limit - HEADER.size
    if room < 1:
        raise AgentError(f"a part of {limit} bytes has no room after its {HEADER.size}-byte header")
    count = max(1, -(-len(payload) // room))
    if count > MAX_PARTS:
        raise AgentError(f"a message of {len(payload)} bytes needs {count} parts (max {MAX_PARTS})")
    digest = hashlib.sha256(payload).digest()
    return [
        HEADER.pack(MAGIC, digest, i, count) + payload[i * room : (i + 1) * room]
        for i in range(count)
    ]


def publish(
    send: Callable[..., Any],
    topic: str,
    payload: bytes,
    *,
    qos: int = 1,
    retain: bool = False,
    limit: int = DEFAULT_LIMIT,
) -> int:
    """Publish ``payload`` on ``topic``, in parts if it is longer than ``limit``; the number of
    MQTT messages sent."""
    if len(payload) <= limit:
        send(topic, payload, qos=qos, retain=retain)
        return 1
    parts = split(payload, limit)
    for i, part in enumerate(parts):
        send(f"{topic}/part/{i}", part, qos=qos, retain=retain)
    if retain:
        send(topic, b"", qos=qos, retain=True)  # the last whole message there is stale now
    return len(parts)


def part_filter(topic_filter: str) -> str:
    return f"{topic_filter}/part/+"


def base_topic(topic: str) -> str | None:
    """``T`` for ``T/part/{i}``; None for any other topic."""
    head, sep, index = topic.rpartition("/part/")
    return head if sep and index.isdigit() and head else None


@dataclass
class _Pending:
    count: int
    parts: dict[int, bytes] = field(default_factory=dict)
    size: int = 0

    def put(self, index: int, data: bytes) -> int:
        """Keep part ``index``; how many bytes more are held."""
        before = len(self.parts.get(index, b""))
        self.parts[index] = data
        self.size += len(data) - before
        return len(data) - before


class Reassembler:
    """Collects parts; :meth:`add` returns the whole message once its last part arrived."""

    def __init__(self, *, max_bytes: int = 256 << 20, max_pending: int = 16) -> None:
        self.max_bytes = max_bytes
        self.max_pending = max_pending
        self._pending: OrderedDict[tuple[str, bytes], _Pending] = OrderedDict()
        self._refused: deque[tuple[str, bytes]] = deque(maxlen=max(16, max_pending))
        self.held_bytes = 0
        self.dropped = 0

    def add(self, topic: str, payload: bytes) -> bytes | None:
        """Take one part that arrived on ``topic`` (``T/part/{i}``); AgentError if malformed."""
        base = base_topic(topic)
        if base is None:
            raise AgentError(f"not a part topic: {topic!r}")
        if len(payload) < HEADER.size:
            raise AgentError(f"part on {topic}: shorter than its header")
        magic, digest, index, count = HEADER.unpack_from(payload)
        if magic != MAGIC or not 0 <= index < count <= MAX_PARTS:
            raise AgentError(f"part on {topic}: bad header")
        if topic != f"{base}/part/{index}":
            raise AgentError(f"part {index} arrived on {topic}")
        key = (base, digest)
        if key in self._refused:
            return None
        body = payload[HEADER.size :]
        pending = self._pending.get(key)
        if pending is None:
            # every part but the last is full, so a non-last part tells the least total size
            if index < count - 1 and len(body) * (count - 1) >= self.max_bytes:
                self._refuse(key)
                return None
            pending = self._pending[key] = _Pending(count)
        elif pending.count != count:
            raise AgentError(f"part on {topic}: {count} parts, earlier parts said {pending.count}")
        self.held_bytes += pending.put(index, body)
        if pending.size > self.max_bytes:
            self._refuse(key)
            return None
        if len(pending.parts) < count:
            self._bound()
            return None
        self._forget(key)
        whole = b"".join(pending.parts[i] for i in range(count))
        if hashlib.sha256(whole).digest() != digest:
            raise AgentError(f"message in parts on {base}: digest does not match; dropped")
        return whole

    def _forget(self, key: tuple[str, bytes]) -> None:
        pending = self._pending.pop(key, None)
        if pending is not None:
            self.held_bytes -= pending.size

    def _refuse(self, key: tuple[str, bytes]) -> None:
        """A message larger than ``max_bytes``: drop what is held and ignore its other parts."""
        self._forget(key)
        self._refused.append(key)
        self.dropped += 1

    def _bound(self) -> None:
        while len(self._pending) > self.max_pending or (
            len(self._pending) > 1 and self.held_bytes > self.max_bytes
        ):
            oldest = next(iter(self._pending))
            self._forget(oldest)
            self.dropped += 1

    @property
    def pending(self) -> int:
        return len(self._pending)
