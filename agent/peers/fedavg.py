"""Federated averaging of softmax decision heads, with optional privacy and secure sums.

What is learned. A policy's decision head (:class:`agent.policy.head.SoftmaxHead`, ``p =
softmax(x W + b)`` over the model's embeddings), trained with the seed's cross-entropy
gradient steps ``W -= lr (X^T (softmax(XW + b) - Y) / n + l2 W)``, ``b -= lr mean(softmax(XW
+ b) - Y)``. Inside a federation the parameters live in one standardised space shared by all
members (``xs = (x - mean) / scale``, :class:`Standardizer`, from the count-weighted average
of the members' first and second moments, round 0 of :mod:`agent.peers.rounds`), flattened
as ``[W row by row, b]`` (:class:`Layout`); :func:`fold` turns them into an ordinary
raw-space SoftmaxHead for the engine. Because the space is shared, averaging there is the
same as averaging the raw heads.

- :func:`fedavg`: ``w = sum_k n_k w_k / sum_k n_k`` (the seed formula; ``n_k`` = examples).
- :func:`train_from`: E epochs of those gradient steps from the global parameters.
- :func:`privatize`: differential privacy: the update (local minus global) is clipped to L2
  norm ``C`` and Gaussian noise of standard deviation ``sigma * C`` is added to every
  coordinate, with an injected seeded generator.
- Secure aggregation by pairwise masks: each member sends ``[n_k w_k, n_k]`` in fixed point
  (:data:`FIXED_BITS` fractional bits, two's complement in uint64), plus, for every other
  member ``j``, a mask drawn from a seed only ``k`` and ``j`` know: added when ``k < j``,
  subtracted when ``k > j``. Integer arithmetic modulo 2^64 makes the masks cancel exactly in
  the sum, so the coordinator learns ``sum n_k w_k`` and ``sum n_k`` and nothing per member.
  Pair seeds come from Diffie-Hellman over the RFC 3526 2048-bit MODP group (each member
  publishes a public key; the coordinator cannot derive the masks of pairs it is not in), or,
  more simply, from a shared group key (:func:`group_key_seed`: then the masks only hide the
  updates from those without the key, e.g. other tenants of the broker).
- :func:`accept`: a member adopts new weights only if its own held-out accuracy does not drop.

Wire helpers: parameters as base64 of little-endian float32 (4 bytes each), masked sums as
base64 of little-endian uint64 (8 bytes each).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agent.errors import AgentError
from agent.policy.head import SoftmaxHead, softmax

Array = npt.NDArray[np.float64]
U64 = npt.NDArray[np.uint64]

FIXED_BITS = 24  # fractional bits: resolution 6e-8, range +-5e11
_FIXED_LIMIT = 2.0**62
EPS = 1e-6  # added to the standard deviation, as SoftmaxHead.fit does


@dataclass(frozen=True, slots=True)
class Layout:
    """How a head's parameters are flattened: ``[W (dim x classes) row by row, b]``."""

    classes: tuple[str, ...]
    dim: int

    @property
    def size(self) -> int:
        return (self.dim + 1) * len(self.classes)

    def split(self, vector: Array) -> tuple[Array, Array]:
        if vector.shape != (self.size,):
            raise AgentError(f"expected {self.size} parameters, got shape {vector.shape}")
        c = len(self.classes)
        return vector[: self.dim * c].reshape(self.dim, c), vector[self.dim * c :]

    def join(self, weights: Array, bias: Array) -> Array:
        return np.concatenate([np.asarray(weights).reshape(-1), np.asarray(bias)]).astype(
            np.float64
        )

    def zeros(self) -> Array:
        return np.zeros(self.size)


@dataclass(frozen=True, slots=True)
class Standardizer:
    mean: Array
    scale: Array

    def apply(self, x: Array) -> Array:
        out: Array = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        return out

    @classmethod
    def from_moments(cls, moments_vector: Array) -> Standardizer:
        """From the average of :func:`moments` vectors: ``[E x, E x^2]``."""
        first, second = np.split(np.asarray(moments_vector, dtype=np.float64), 2)
        return cls(first, np.sqrt(np.maximum(second - first**2, 0.0)) + EPS)


def moments(x: Array) -> Array:
    """``[mean of x, mean of x^2]`` per feature: what a member contributes to round 0."""
    x = np.asarray(x, dtype=np.float64)
    return np.concatenate([x.mean(axis=0), (x**2).mean(axis=0)])


def fold(vector: Array, layout: Layout, std: Standardizer) -> SoftmaxHead:
    """Standardised parameters -> a raw-space SoftmaxHead (``xs W + b == x W' + b'``)."""
    w, b = layout.split(vector)
    raw_w = w / std.scale[:, None]
    return SoftmaxHead(list(layout.classes), raw_w, b - std.mean @ raw_w)


def unfold(head: SoftmaxHead, std: Standardizer) -> Array:
    """A raw-space SoftmaxHead -> standardised parameters (the inverse of :func:`fold`)."""
    w = head.weights * std.scale[:, None]
    return np.concatenate([w.reshape(-1), head.bias + std.mean @ head.weights])


def one_hot(labels: Sequence[str], classes: Sequence[str]) -> Array:
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({lb for lb in labels if lb not in index})
    if unknown:
        raise AgentError(f"labels {unknown} are not among the classes {list(classes)}")
    y = np.zeros((len(labels), len(classes)))
    y[np.arange(len(labels)), [index[lb] for lb in labels]] = 1.0
    return y


def train_from(
    start: Array,
    layout: Layout,
    xs: Array,
    labels: Sequence[str],
    *,
    epochs: int,
    lr: float,
    l2: float = 1e-3,
) -> Array:
    """``epochs`` full-batch cross-entropy gradient steps from ``start`` on standardised
    inputs ``xs`` (exactly SoftmaxHead.fit's update)."""
    if len(labels) == 0:
        raise AgentError("cannot train on no examples")
    xs = np.asarray(xs, dtype=np.float64)
    y = one_hot(labels, layout.classes)
    w, b = (part.copy() for part in layout.split(np.asarray(start, dtype=np.float64)))
    n = len(labels)
    for _ in range(epochs):
        grad = softmax(xs @ w + b) - y
        w -= lr * (xs.T @ grad / n + l2 * w)
        b -= lr * grad.mean(axis=0)
    return layout.join(w, b)


def fedavg(vectors: Sequence[Array], counts: Sequence[int]) -> Array:
    """``sum_k n_k w_k / sum_k n_k``."""
    if len(vectors) != len(counts) or not vectors:
        raise AgentError(f"need as many counts as vectors, got {len(vectors)} and {len(counts)}")
    if any(n < 0 for n in counts) or sum(counts) <= 0:
        raise AgentError(f"counts must be >= 0 with a positive total, got {list(counts)}")
    stacked = np.stack([np.asarray(v, dtype=np.float64) for v in vectors])
    weights = np.asarray(counts, dtype=np.float64)
    out: Array = weights @ stacked / weights.sum()
    return out


# -- differential privacy ------------------------------------------------------------------


def clip(delta: Array, bound: float) -> Array:
    """``delta`` scaled down to L2 norm ``bound`` if it is longer."""
    if bound <= 0:
        raise AgentError(f"the clipping bound must be > 0, got {bound}")
    norm = float(np.linalg.norm(delta))
    out: Array = delta * (bound / norm) if norm > bound else np.array(delta, dtype=np.float64)
    return out


def privatize(
    local: Array, start: Array, *, clip_norm: float, sigma: float, rng: np.random.Generator
) -> Array:
    """``start + clip(local - start, C) + N(0, (sigma C)^2)`` per coordinate."""
    if sigma < 0:
        raise AgentError(f"the noise multiplier must be >= 0, got {sigma}")
    delta = clip(np.asarray(local, dtype=np.float64) - start, clip_norm)
    noise = rng.normal(0.0, sigma * clip_norm, size=delta.shape)
    out: Array = start + delta + noise
    return out


# -- adoption -------------------------------------------------------------------------------


def accept(new: SoftmaxHead, current: SoftmaxHead | None, x: Array, labels: Sequence[str]) -> bool:
    """Adopt ``new`` only if it is at least as accurate as ``current`` on held-out data."""
    if current is None:
        return True
    if len(labels) == 0:
        return False  # nothing to check against: keep what works
    return new.accuracy(x, list(labels)) >= current.accuracy(x, list(labels))


# -- secure aggregation -------------------------------------------------------------------


def to_fixed(vector: Array) -> U64:
    """Fixed point with :data:`FIXED_BITS` fractional bits, two's complement in uint64."""
    scaled = np.round(np.asarray(vector, dtype=np.float64) * 2.0**FIXED_BITS)
    if not np.all(np.isfinite(scaled)) or np.any(np.abs(scaled) >= _FIXED_LIMIT):
        raise AgentError("a value is too large (or not finite) for the fixed-point encoding")
    out: U64 = scaled.astype(np.int64).view(np.uint64)
    return out


def from_fixed(values: U64) -> Array:
    out: Array = np.asarray(values, dtype=np.uint64).view(np.int64) / 2.0**FIXED_BITS
    return out


def pair_mask(seed: bytes, size: int) -> U64:
    """``size`` uniform uint64 drawn from ``seed`` (the same at both ends of a pair)."""
    generator = np.random.Generator(np.random.PCG64(int.from_bytes(seed, "big")))
    out: U64 = generator.bit_generator.random_raw(size).astype(np.uint64)
    return out


def mask(
    values: U64, self_id: str, members: Sequence[str], seed_for: Callable[[str], bytes]
) -> U64:
    """``values`` plus the masks shared with every other member (``+`` towards a higher id,
    ``-`` towards a lower one), modulo 2^64."""
    out = np.array(values, dtype=np.uint64)
    for other in sorted(set(members) - {self_id}):
        m = pair_mask(seed_for(other), out.size)
        if self_id < other:
            out += m
        else:
            out -= m
    return out


def sum_masked(parts: Sequence[U64]) -> U64:
    """The sum modulo 2^64, where the masks cancel."""
    if not parts:
        raise AgentError("nothing to sum")
    total = np.zeros(parts[0].shape, dtype=np.uint64)
    for part in parts:
        total += part
    return total


def secure_payload(vector: Array, count: int) -> U64:
    """What a member masks: ``[n w, n]`` in fixed point."""
    return to_fixed(np.concatenate([count * np.asarray(vector, dtype=np.float64), [count]]))


def secure_average(total: U64) -> tuple[Array, int]:
    """``sum n_k w_k / sum n_k`` and ``sum n_k`` from the unmasked sum of secure payloads."""
    summed = from_fixed(total)
    count = round(float(summed[-1]))
    if count <= 0:
        raise AgentError(f"the masked sum holds {summed[-1]} examples: the masks did not cancel")
    out: Array = summed[:-1] / count
    return out, count


# -- pair seeds -----------------------------------------------------------------------------

# RFC 3526, 2048-bit MODP group (id 14): a safe prime, generator 2
MODP_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879"
    "8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B"
    "0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA4836"
    "1C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804"
    "F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6"
    "955817183995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)
MODP_G = 2


@dataclass(frozen=True, slots=True)
class KeyPair:
    private: int
    public: int

    @classmethod
    def generate(cls, random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> KeyPair:
        private = int.from_bytes(random_bytes(32), "big") | 1 << 255  # 256-bit exponent
        return cls(private, pow(MODP_G, private, MODP_P))

    def public_hex(self) -> str:
        return format(self.public, "x")


def parse_public(text: object) -> int:
    """A peer's public key (hex); refuses the degenerate values 0, 1 and p - 1."""
    if not isinstance(text, str) or not 0 < len(text) <= 512:
        raise AgentError(f"public key must be a hex string, got {text!r}")
    try:
        value = int(text, 16)
    except ValueError:
        raise AgentError(f"public key must be a hex string, got {text[:20]!r}") from None
    if not 1 < value < MODP_P - 1:
        raise AgentError("public key out of range")
    return value


def pair_context(context: str, a: str, b: str) -> bytes:
    low, high = sorted((a, b))
    return f"{context}|{low}|{high}".encode()


def dh_seed(own: KeyPair, self_id: str, other: str, their_public: int, context: str) -> bytes:
    """The seed that only ``self_id`` and ``other`` can compute, different in every context
    (group, policy, round, attempt)."""
    shared = pow(their_public, own.private, MODP_P).to_bytes(256, "big")
    key = hashlib.sha256(shared).digest()
    return hmac.new(key, pair_context(context, self_id, other), hashlib.sha256).digest()


def group_key_seed(group_key: bytes, self_id: str, other: str, context: str) -> bytes:
    """A pair seed from a key the whole group shares (hides updates from outsiders only)."""
    return hmac.new(group_key, pair_context(context, self_id, other), hashlib.sha256).digest()


# -- wire -------------------------------------------------------------------------------------


def encode_floats(vector: Array) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_floats(text: object, size: int) -> Array:
    raw = _b64(text, 4 * size, "float32")
    values = np.frombuffer(raw, dtype="<f4").astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise AgentError("parameters must be finite")
    return values


def encode_u64(values: U64) -> str:
    return base64.b64encode(np.asarray(values, dtype="<u8").tobytes()).decode("ascii")


def decode_u64(text: object, size: int) -> U64:
    out: U64 = np.frombuffer(_b64(text, 8 * size, "uint64"), dtype="<u8").astype(np.uint64)
    return out


def _b64(text: object, nbytes: int, what: str) -> bytes:
    if not isinstance(text, str):
        raise AgentError(f"{what} data must be a base64 string, got {type(text).__name__}")
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raise AgentError(f"{what} data is not valid base64") from None
    if len(raw) != nbytes:
        raise AgentError(f"{what} data holds {len(raw)} bytes, expected {nbytes}")
    return raw
