"""Signed actuator commands (SPEC 4): canonical JSON, HMAC-SHA256, the shared key, replay memory.

The agent signs with :func:`make_command`; an actuator (``firmware_sim``) accepts a command
with :func:`check_command` only if the signature verifies, ``ts - 30 <= now <= expires`` and
the nonce is new. Everything here is pure except the key file helpers; clocks are parameters.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import logging
import math
import os
import secrets
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.errors import AgentError
from agent.numbers import finite_number

log = logging.getLogger(__name__)

MIN_KEY_BYTES = 16
REASON_MAX = 200
SKEW = 30.0
FIELDS: dict[str, tuple[type, ...]] = {  # every SPEC 4 field and the JSON types it may take
    "id": (str,),
    "device": (str,),
    "actuator": (str,),
    "action": (str,),
    "value": (float, int, type(None)),
    "ts": (float, int),
    "expires": (float, int),
    "nonce": (str,),
    "agent": (str,),
    "policy": (str,),
    "reason": (str,),
    "sig": (str,),
}
REJECTIONS = ("malformed", "bad signature", "expired", "not yet valid", "replayed")


def canonical_json(obj: Mapping[str, object]) -> bytes:
    """The exact bytes that are signed (SPEC 4)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def sign(fields: Mapping[str, object], key: bytes) -> str:
    """Lowercase hex HMAC-SHA256 over the canonical JSON of every field but ``sig``."""
    unsigned = {k: v for k, v in fields.items() if k != "sig"}
    return hmac.new(key, canonical_json(unsigned), hashlib.sha256).hexdigest()


def verify(command: Mapping[str, object], key: bytes) -> bool:
    """True only if ``command["sig"]`` is the signature of the other fields under ``key``."""
    sig = command.get("sig")
    if not isinstance(sig, str) or not sig.isascii():
        return False
    try:
        expected = sign(command, key)
    except (TypeError, ValueError):  # not JSON-serialisable, or a lone surrogate
        return False
    return hmac.compare_digest(expected, sig)


def load_key(path: Path) -> bytes:
    """The shared command key: the file's bytes without surrounding whitespace."""
    try:
        key = Path(path).read_bytes().strip()
    except FileNotFoundError:
        raise AgentError(f"command key file {path} does not exist") from None
    except OSError as exc:
        raise AgentError(f"command key file {path} cannot be read: {exc.strerror}") from None
    if len(key) < MIN_KEY_BYTES:
        raise AgentError(
            f"command key file {path} holds {len(key)} bytes; a key needs at least {MIN_KEY_BYTES}"
        )
    _warn_if_shared(path)
    return key


def _warn_if_shared(path: Path) -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if mode & 0o077:
        log.warning("command key file %s is readable by others (mode %o)", path, mode & 0o777)


def generate_key_file(path: Path, *, overwrite: bool = False) -> bytes:
    """Write a new random key (32 bytes as 64 hex characters) with mode 0600; return it."""
    key = secrets.token_hex(32).encode("ascii")
    path = Path(path)
    target = path.with_name(path.name + ".tmp") if overwrite else path
    try:
        if overwrite:
            target.unlink(missing_ok=True)  # left over from an interrupted run
        _write_private(target, key + b"\n")
        if overwrite:
            os.replace(target, path)
    except FileExistsError:
        raise AgentError(f"command key file {target} already exists") from None
    except OSError as exc:
        raise AgentError(f"cannot write command key file {target}: {exc.strerror}") from None
    return key


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` (never replacing a file) readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)  # whatever the umask says
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def make_command(
    *,
    device: str,
    actuator: str,
    action: str,
    value: float | None,
    policy: str,
    agent: str,
    reason: str,
    key: bytes,
    now: float,
    ttl: float,
    command_id: str | None = None,
    nonce: str | None = None,
) -> dict[str, object]:
    """A signed SPEC 4 command, valid from ``now`` until ``now + ttl``."""
    number = None if value is None else finite_number(value)
    if value is not None and number is None:
        raise AgentError(f"a command's value must be a finite number or None, got {value!r}")
    if finite_number(now) is None or finite_number(ttl) is None or ttl <= 0:
        raise AgentError(f"a command needs a finite time and a positive ttl, got {now!r}, {ttl!r}")
    command: dict[str, object] = {
        "id": command_id if command_id is not None else uuid.uuid4().hex,
        "device": device,
        "actuator": actuator,
        "action": action,
        "value": number,
        "ts": float(now),
        "expires": float(now + ttl),
        "nonce": nonce if nonce is not None else secrets.token_hex(8),
        "agent": agent,
        "policy": policy,
        "reason": reason[:REASON_MAX],
    }
    command["sig"] = sign(command, key)
    return command


class NonceMemory:
    """The nonces of accepted commands, each kept until its command expires.

    Bounded: when full, the entry closest to expiry is dropped and from then on any unknown
    nonce of a command expiring no later than it is refused too, so eviction never lets a
    replay through (it can only refuse a command that is about to expire anyway).
    """

    def __init__(self, max_size: int = 4096) -> None:
        if max_size < 1:
            raise AgentError(f"NonceMemory max_size must be at least 1, got {max_size}")
        self.max_size = max_size
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._horizon = -math.inf  # latest expiry among evicted nonces

    def __len__(self) -> int:
        return len(self._expiry)

    def __contains__(self, nonce: object) -> bool:
        return nonce in self._expiry

    def prune(self, now: float) -> None:
        """Forget the nonces of commands that have expired (``expires < now``)."""
        while self._heap and self._heap[0][0] < now:
            _, nonce = heapq.heappop(self._heap)
            del self._expiry[nonce]

    def add(self, nonce: str, expires: float, now: float) -> bool:
        """Remember ``nonce``; False if it was seen before (or may have been)."""
        self.prune(now)
        if nonce in self._expiry or expires <= self._horizon:
            return False
        if len(self._expiry) >= self.max_size:
            dropped_expiry, dropped = heapq.heappop(self._heap)
            del self._expiry[dropped]
            self._horizon = max(self._horizon, dropped_expiry)
            if expires <= self._horizon:
                return False
        self._expiry[nonce] = expires
        heapq.heappush(self._heap, (expires, nonce))
        return True


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_unique_keys)


def parse_command(payload: bytes | Mapping[str, object]) -> dict[str, object] | None:
    """The command as a dict if it has every SPEC 4 field with the right type, else None."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        try:
            payload = _DECODER.decode(bytes(payload).decode("utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return None
    if not isinstance(payload, Mapping):
        return None
    command = dict(payload)
    for name, types in FIELDS.items():
        value = command.get(name, ...)
        if isinstance(value, bool) or not isinstance(value, types):
            return None
    if finite_number(command["ts"]) is None or finite_number(command["expires"]) is None:
        return None
    if command["value"] is not None and finite_number(command["value"]) is None:
        return None
    return command


def check_command(
    payload: bytes | Mapping[str, object],
    key: bytes,
    now: float,
    nonces: NonceMemory,
    *,
    skew: float = SKEW,
) -> str | None:
    """None if an actuator may apply this command (its nonce is then remembered), else one of
    ``"malformed"``, ``"bad signature"``, ``"expired"``, ``"not yet valid"``, ``"replayed"``."""
    command = parse_command(payload)
    if command is None:
        return "malformed"
    if not verify(command, key):
        return "bad signature"
    ts, expires = finite_number(command["ts"]), finite_number(command["expires"])
    if ts is None or expires is None:  # parse_command has made sure they are numbers
        return "malformed"
    if now < ts - skew:
        return "not yet valid"
    if now > expires:
        return "expired"
    if not nonces.add(str(command["nonce"]), expires, now):
        return "replayed"
    return None
