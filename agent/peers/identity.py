"""Who sent a peer message: every agent's own Ed25519 key pair and the site roster.

Keys. ``edge-agent keygen --identity PATH`` writes the agent's private key to ``PATH``
(PKCS#8 PEM, mode 0600; it never leaves the agent) and its public key to ``PATH.pub``, one
line ``ed25519:<base64 of the 32 raw bytes>``, which the operator pastes into the roster.

Roster. A YAML (or JSON) file the operator writes and gives to every agent of the site:
a mapping of agent id to public key::

    pi-livingroom: ed25519:3q2+7w...
    pi-kitchen: ed25519:q83vEj...

It is what membership means: with a roster configured (``security.roster_file``), a peer
message counts only if it is signed by the key the roster lists for the agent the topic
names. The agent re-reads it on SIGHUP.

Signatures (extension of SPEC 3 and 6 and of the federation topics, compatible: two new
fields, every existing field kept). The sender adds ``"signer": "<agent id>"`` and then
``"sig"``: lowercase hex Ed25519 signature over the canonical JSON of every other field
(``json.dumps(obj_without_sig, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` as UTF-8, as for commands in SPEC 4). With a roster configured an
unsigned message is refused like a badly signed one; without one, nothing is checked (the
group trusts anyone on the broker; the agent says so at start).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import read_yaml
from agent.errors import AgentError
from agent.peers import wire
from agent.policy.signing import canonical_json

if TYPE_CHECKING:  # cryptography (7 MB resident) is imported where a key is first used
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

log = logging.getLogger(__name__)

PUBLIC_PREFIX = "ed25519:"
SIG_HEX = 128  # an Ed25519 signature is 64 bytes


def public_text(key: Ed25519PublicKey) -> str:
    """``ed25519:<base64>``: how a public key is written in ``.pub`` files and rosters."""
    from cryptography.hazmat.primitives import serialization

    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PUBLIC_PREFIX + base64.b64encode(raw).decode("ascii")


def parse_public(text: object) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not isinstance(text, str) or not text.startswith(PUBLIC_PREFIX):
        raise AgentError(f"a public key is written {PUBLIC_PREFIX}<base64>, got {text!r}")
    try:
        raw = base64.b64decode(text[len(PUBLIC_PREFIX):].strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error):
        raise AgentError(f"not an Ed25519 public key: {text!r}") from None


class Identity:
    """This agent's id and private key: signs what it sends to its peers."""

    def __init__(self, agent_id: str, key: Ed25519PrivateKey) -> None:
        self.agent_id = agent_id
        self.key = key

    @property
    def public(self) -> str:
        return public_text(self.key.public_key())

    @classmethod
    def generate(cls, agent_id: str) -> Identity:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(agent_id, Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, agent_id: str, path: Path) -> Identity:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except OSError as exc:
            raise AgentError(f"{path}: cannot read the identity key: {exc.strerror}") from None
        except (ValueError, TypeError):
            raise AgentError(f"{path}: not a PEM private key (make one with edge-agent keygen "
                             f"--identity {path})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise AgentError(f"{path}: not an Ed25519 key")
        return cls(agent_id, key)

    def sign(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """``data`` with ``signer`` (this agent) and ``sig`` added."""
        out = {k: v for k, v in data.items() if k not in ("sig", "signer")}
        out["signer"] = self.agent_id
        out["sig"] = self.key.sign(canonical_json(out)).hex()
        return out

    def sign_payload(self, payload: bytes) -> bytes:
        """A JSON object payload, signed; an empty payload (a cleared retained message) as is."""
        if not payload:
            return payload
        return wire.dumps(self.sign(wire.load_object(payload, "own message")))


def write_identity(path: Path, *, overwrite: bool = False) -> str:
    """A new key pair: the private key at ``path`` (0600), the public one at ``path.pub``;
    returns the public key's text."""
    pub = path.with_name(path.name + ".pub")
    if not overwrite and (path.exists() or pub.exists()):
        raise AgentError(f"{path} already exists (use --force to replace it)")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    os.replace(tmp, path)
    text = public_text(key.public_key())
    pub.write_text(text + "\n", encoding="utf-8")
    return text


class Roster:
    """Agent id -> public key: the members of the site."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey], source: str = "<roster>") -> None:
        self.keys = dict(keys)
        self.source = source

    def __contains__(self, agent: object) -> bool:
        return agent in self.keys

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def ids(self) -> list[str]:
        return sorted(self.keys)

    @classmethod
    def parse(cls, text: str, source: str = "<roster>") -> Roster:
        try:
            data = read_yaml(text)  # JSON is YAML too
        except Exception as exc:  # yaml.YAMLError and its kin: refused with the file's name
            raise AgentError(f"{source}: not valid YAML or JSON: {exc}") from None
        if not isinstance(data, dict) or not data:
            raise AgentError(f"{source}: a roster is a mapping of agent id to public key")
        errors, keys = [], {}
        for agent, text_key in data.items():
            if not isinstance(agent, str) or not agent or any(c in agent for c in "/+# \t"):
                errors.append(f"{source}: {agent!r} is not an agent id")
                continue
            try:
                keys[agent] = parse_public(text_key)
            except AgentError as exc:
                errors.append(f"{source}: {agent}: {exc}")
        if errors:
            raise AgentError("; ".join(errors))
        return cls(keys, source)

    @classmethod
    def load(cls, path: Path) -> Roster:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AgentError(f"{path}: cannot read the roster: {exc}") from None
        return cls.parse(text, str(path))

    def verify(self, data: Mapping[str, Any], sender: str, what: str) -> None:
        """Refuse (:class:`AgentError`) unless ``data`` is signed by ``sender``'s roster key."""
        from cryptography.exceptions import InvalidSignature

        signer, sig = data.get("signer"), data.get("sig")
        if signer is None or sig is None:
            raise AgentError(f"{what}: unsigned (a roster is configured)")
        if signer != sender:
            raise AgentError(f"{what}: signed by {signer!r}, expected {sender!r}")
        key = self.keys.get(sender)
        if key is None:
            raise AgentError(f"{what}: {sender!r} is not in the roster")
        if not isinstance(sig, str) or len(sig) != SIG_HEX:
            raise AgentError(f"{what}: malformed signature")
        try:
            key.verify(bytes.fromhex(sig), canonical_json({k: v for k, v in data.items()
                                                          if k != "sig"}))
        except (ValueError, InvalidSignature):
            raise AgentError(f"{what}: bad signature of {sender!r}") from None
