"""The model-update key: an Ed25519 pair whose private half stays on the operator's machine.

The operator makes it once with ``edge-agent keygen --update PATH``: ``PATH`` (the private key,
PKCS#8 PEM, mode 0600) signs manifests with ``edge-agent model push --key PATH``; ``PATH.pub``
(SubjectPublicKeyInfo PEM) is copied to every agent as ``security.update_public_key_file``.
An agent holding only the public half can check an update but never make one, unlike the
HMAC command key that every actuator also holds. With ``agent.peers.identity``, the only
importer of ``cryptography``, and only when a key is used: an agent with no key never maps its
7 MB (``docs/benchmarks.md``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import AgentError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    PrivateKey = Ed25519PrivateKey
    PublicKey = Ed25519PublicKey

log = logging.getLogger(__name__)

PUBLIC_SUFFIX = ".pub"


def public_path(private: Path) -> Path:
    return private.with_name(private.name + PUBLIC_SUFFIX)


def generate_key_pair(path: Path, *, overwrite: bool = False) -> Path:
    """Write a new private key to ``path`` (mode 0600) and its public key to ``path.pub``;
    return the public key's path."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path, pub = Path(path), public_path(Path(path))
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if not overwrite:
        for target in (path, pub):
            if target.exists():
                raise AgentError(f"update key file {target} already exists")
    _write_atomic(path, private_pem, 0o600)
    _write_atomic(pub, public_pem, 0o644)
    return pub


def load_private(path: Path) -> Ed25519PrivateKey:
    """The operator's private update key from ``path`` (AgentError, with the path, if not)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = _read(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        if b"PUBLIC KEY" in data:
            raise AgentError(f"{path} is a public key: sign with the private one") from None
        raise AgentError(f"{path} is not an update key (PEM, unencrypted): {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AgentError(f"{path} holds a {type(key).__name__}, not an Ed25519 update key")
    mode = os.stat(path).st_mode
    if mode & 0o077:
        log.warning("update key file %s is readable by others (mode %o)", path, mode & 0o777)
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    """The public update key an agent verifies with (AgentError, with the path, if not)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = _read(path)
    if b"PRIVATE KEY" in data:
        raise AgentError(
            f"{path} is a private update key: it must stay with the operator; "
            f"give the agent only the public half ({path.name}{PUBLIC_SUFFIX})"
        )
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise AgentError(
            f"{path} is not a public update key (made by edge-agent keygen --update): {exc}"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise AgentError(f"{path} holds a {type(key).__name__}, not an Ed25519 update key")
    return key


def key_id(key: Ed25519PublicKey) -> str:
    """A short name for a public key: the first 16 hex digits of the SHA-256 of its bytes."""
    from cryptography.hazmat.primitives import serialization

    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    """The Ed25519 signature of ``data`` as 128 lowercase hex digits."""
    return key.sign(data).hex()


def verify(key: Ed25519PublicKey, data: bytes, sig: str) -> bool:
    """True only if ``sig`` (128 hex digits) is ``key``'s signature of ``data``."""
    from cryptography.exceptions import InvalidSignature

    try:
        raw = bytes.fromhex(sig)
    except ValueError:
        return False
    if len(raw) != 64:
        return False
    try:
        key.verify(raw, data)
    except InvalidSignature:
        return False
    return True


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise AgentError(f"update key file {path} does not exist") from None
    except OSError as exc:
        raise AgentError(f"update key file {path} cannot be read: {exc.strerror}") from None


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.unlink(missing_ok=True)  # left over from an interrupted run
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)  # whatever the umask says
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise AgentError(f"cannot write update key file {path}: {exc.strerror}") from None
