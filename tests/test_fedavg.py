"""FedAvg against numpy, local training against SoftmaxHead.fit, exact mask cancellation,
Diffie-Hellman pair seeds, the DP noise scale and clipping, adopt-only-if-not-worse."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from agent.errors import AgentError
from agent.peers import fedavg as fa
from agent.policy.head import SoftmaxHead

CLASSES = ("cool", "heat", "off")


def blobs(rng: np.random.Generator, n: int, dim: int = 6) -> tuple[fa.Array, list[str]]:
    """Three separable clusters, offset and scaled like raw embeddings are."""
    centres = rng.normal(0, 1, size=(3, dim))
    idx = rng.integers(0, 3, size=n)
    x = 5.0 + 0.1 * (centres[idx] + 0.3 * rng.normal(size=(n, dim)))
    return x, [CLASSES[i] for i in idx]


def test_fedavg_is_the_count_weighted_mean() -> None:
    rng = np.random.default_rng(1)
    vectors = [rng.normal(size=50) for _ in range(5)]
    counts = [10, 1, 0, 250, 37]
    expected = np.average(np.stack(vectors), axis=0, weights=counts)
    np.testing.assert_allclose(fa.fedavg(vectors, counts), expected, rtol=1e-12, atol=1e-15)
    by_hand = sum(n * v for n, v in zip(counts, vectors, strict=True)) / sum(counts)
    np.testing.assert_allclose(fa.fedavg(vectors, counts), by_hand, rtol=1e-12)
    with pytest.raises(AgentError):
        fa.fedavg(vectors, [0] * 5)
    with pytest.raises(AgentError):
        fa.fedavg(vectors, [1, 2])


def test_train_from_zeros_is_softmax_head_fit() -> None:
    rng = np.random.default_rng(2)
    x, labels = blobs(rng, 120)
    layout = fa.Layout(CLASSES, x.shape[1])
    std = fa.Standardizer.from_moments(fa.moments(x))
    trained = fa.train_from(layout.zeros(), layout, std.apply(x), labels, epochs=300, lr=0.5)
    ours = fa.fold(trained, layout, std)
    reference = SoftmaxHead.fit(x, labels, list(CLASSES))
    np.testing.assert_allclose(ours.proba(x), reference.proba(x), atol=1e-6)
    assert ours.accuracy(x, labels) == reference.accuracy(x, labels) == 1.0


def test_fold_and_unfold_are_inverse_and_equivalent() -> None:
    rng = np.random.default_rng(3)
    x, _ = blobs(rng, 30)
    layout = fa.Layout(CLASSES, x.shape[1])
    std = fa.Standardizer(rng.normal(size=6), rng.uniform(0.5, 2.0, size=6))
    params = rng.normal(size=layout.size)
    head = fa.fold(params, layout, std)
    np.testing.assert_allclose(fa.unfold(head, std), params, atol=1e-12)
    w, b = layout.split(params)
    logits = std.apply(x) @ w + b
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(head.proba(x), expected / expected.sum(1, keepdims=True))


def test_one_epoch_fedavg_from_one_start_is_one_pooled_gradient_step() -> None:
    # with E = 1, averaging the members' steps by count is a step on the pooled data
    rng = np.random.default_rng(4)
    parts = [blobs(rng, n) for n in (10, 25, 40)]
    layout = fa.Layout(CLASSES, 6)
    std = fa.Standardizer(np.full(6, 5.0), np.full(6, 0.1))
    start = rng.normal(scale=0.1, size=layout.size)
    local = [
        fa.train_from(start, layout, std.apply(x), lb, epochs=1, lr=0.3, l2=0.0) for x, lb in parts
    ]
    averaged = fa.fedavg(local, [len(lb) for _, lb in parts])
    xs = std.apply(np.concatenate([x for x, _ in parts]))
    pooled = fa.train_from(
        start, layout, xs, [lb for _, ls in parts for lb in ls], epochs=1, lr=0.3, l2=0.0
    )
    np.testing.assert_allclose(averaged, pooled, atol=1e-12)


# -- secure aggregation ------------------------------------------------------------------------


def test_pairwise_masks_cancel_exactly_in_the_sum() -> None:
    rng = np.random.default_rng(5)
    members = ["pi-a", "pi-b", "pi-c", "pi-d", "pi-e"]
    vectors = {m: rng.normal(scale=3.0, size=1000) for m in members}
    counts = {m: int(rng.integers(1, 500)) for m in members}
    keys = {m: fa.KeyPair.generate() for m in members}

    def seeds(me: str) -> Callable[[str], bytes]:
        return lambda other: fa.dh_seed(keys[me], me, other, keys[other].public, "g/p/s/1/0")

    plain = {m: fa.secure_payload(vectors[m], counts[m]) for m in members}
    masked = {m: fa.mask(plain[m], m, members, seeds(m)) for m in members}
    for m in members:  # each one alone looks like noise
        assert np.mean(masked[m] == plain[m]) < 0.01
    total = fa.sum_masked(list(masked.values()))
    assert np.array_equal(total, fa.sum_masked(list(plain.values())))  # bit for bit
    average, count = fa.secure_average(total)
    assert count == sum(counts.values())
    expected = fa.fedavg([vectors[m] for m in members], [counts[m] for m in members])
    np.testing.assert_allclose(average, expected, atol=2.0**-fa.FIXED_BITS)
    # one update missing: the masks no longer cancel
    partial = fa.sum_masked([masked[m] for m in members[:-1]])
    assert not np.array_equal(partial, fa.sum_masked([plain[m] for m in members[:-1]]))


def test_group_key_masks_cancel_too() -> None:
    members = ["a", "b", "c"]
    values = {m: fa.to_fixed(np.full(4, i - 1.5)) for i, m in enumerate(members)}

    def seeds(me: str) -> Callable[[str], bytes]:
        return lambda other: fa.group_key_seed(b"k" * 32, me, other, "ctx")

    masked = [fa.mask(values[m], m, members, seeds(m)) for m in members]
    np.testing.assert_array_equal(fa.from_fixed(fa.sum_masked(masked)), np.full(4, -1.5))


def test_diffie_hellman_seeds_agree_in_pairs_and_differ_otherwise() -> None:
    a, b, c = (fa.KeyPair.generate() for _ in range(3))
    ab = fa.dh_seed(a, "a", "b", b.public, "round-1")
    assert ab == fa.dh_seed(b, "b", "a", a.public, "round-1")
    assert ab != fa.dh_seed(a, "a", "b", b.public, "round-2")
    assert ab != fa.dh_seed(c, "a", "b", b.public, "round-1")  # a third party's key
    assert fa.parse_public(a.public_hex()) == a.public
    for bad in ("1", format(fa.MODP_P - 1, "x"), "zz", 5, ""):
        with pytest.raises(AgentError):
            fa.parse_public(bad)


def test_fixed_point_round_trips_and_refuses_what_it_cannot_hold() -> None:
    values = np.array([0.0, -1.5, 3.25, -(2.0**30), 1e-9])
    np.testing.assert_allclose(fa.from_fixed(fa.to_fixed(values)), values, atol=2.0**-fa.FIXED_BITS)
    for bad in ([2.0**40], [math.nan], [math.inf]):
        with pytest.raises(AgentError):
            fa.to_fixed(np.array(bad))


# -- differential privacy --------------------------------------------------------------------


def test_clipping_bounds_the_norm_and_keeps_the_direction() -> None:
    delta = np.array([3.0, 4.0])
    np.testing.assert_allclose(fa.clip(delta, 1.0), [0.6, 0.8])
    np.testing.assert_array_equal(fa.clip(delta, 10.0), delta)
    rng = np.random.default_rng(6)
    for _ in range(50):
        d = rng.normal(scale=rng.uniform(0.01, 100), size=300)
        assert np.linalg.norm(fa.clip(d, 2.5)) <= 2.5 * (1 + 1e-12)
    with pytest.raises(AgentError):
        fa.clip(delta, 0.0)


def test_dp_noise_has_the_configured_scale() -> None:
    start = np.zeros(200_000)
    local = np.full(200_000, 0.01)  # norm 4.47: clipped to C = 2
    clip_norm, sigma = 2.0, 0.75
    out = fa.privatize(local, start, clip_norm=clip_norm, sigma=sigma, rng=np.random.default_rng(7))
    noise = out - fa.clip(local - start, clip_norm)
    # the sample standard deviation of 200,000 draws is within 1% of sigma * C (~6 sigmas)
    assert noise.std() == pytest.approx(sigma * clip_norm, rel=0.01)
    assert abs(noise.mean()) < 5 * sigma * clip_norm / math.sqrt(noise.size)
    # Gaussian: about 68.3% within one standard deviation
    assert np.mean(np.abs(noise) < sigma * clip_norm) == pytest.approx(0.6827, abs=0.005)
    again = fa.privatize(
        local, start, clip_norm=clip_norm, sigma=sigma, rng=np.random.default_rng(7)
    )
    np.testing.assert_array_equal(out, again)  # seeded: reproducible
    exact = fa.privatize(local, start, clip_norm=clip_norm, sigma=0.0, rng=np.random.default_rng(7))
    assert np.linalg.norm(exact - start) == pytest.approx(clip_norm)


# -- adoption, wire ----------------------------------------------------------------------------


def test_accept_only_if_held_out_accuracy_does_not_drop() -> None:
    rng = np.random.default_rng(8)
    x, labels = blobs(rng, 60)
    good = SoftmaxHead.fit(x, labels, list(CLASSES))
    bad = SoftmaxHead(list(CLASSES), np.zeros((6, 3)), np.array([1.0, 0.0, 0.0]))
    assert fa.accept(good, None, x, labels)
    assert fa.accept(good, bad, x, labels)
    assert not fa.accept(bad, good, x, labels)
    assert fa.accept(good, good, x, labels)  # not worse is enough
    assert not fa.accept(good, bad, x[:0], [])  # nothing to check against: keep


def test_wire_encodings_and_their_sizes() -> None:
    rng = np.random.default_rng(9)
    v = rng.normal(size=1731)
    text = fa.encode_floats(v)
    assert len(text) == 4 * math.ceil(4 * 1731 / 3)  # base64 of 4 bytes a value
    np.testing.assert_allclose(fa.decode_floats(text, 1731), v, rtol=1e-7)
    u = fa.to_fixed(v)
    assert np.array_equal(fa.decode_u64(fa.encode_u64(u), 1731), u)
    with pytest.raises(AgentError, match="expected"):
        fa.decode_floats(text, 1730)
    with pytest.raises(AgentError, match="base64"):
        fa.decode_floats("not base64!", 1)
    with pytest.raises(AgentError, match="finite"):
        fa.decode_floats(fa.encode_floats(np.array([math.nan])), 1)
    with pytest.raises(AgentError):
        fa.Layout(CLASSES, 4).split(np.zeros(3))
