"""Windowed features of one series, and their normalisation for the model."""

from __future__ import annotations

import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.pipeline.features import Features, Normalizer, compute

T0 = 1_764_370_000.0


def features(
    points: list[tuple[float, float]], window_s: float = 60.0, now: float = T0 + 60.0
) -> Features | None:
    return compute(
        points, device="dev-1", quantity="temperature", unit="C", window_s=window_s, now=now
    )


def linear(n: int, step_s: float, start: float, per_step: float) -> list[tuple[float, float]]:
    return [(T0 + k * step_s, start + k * per_step) for k in range(n)]


def test_no_points_no_features() -> None:
    assert features([]) is None


def test_points_outside_the_window_give_none() -> None:
    assert features([(T0 - 0.5, 20.0), (T0 + 61.0, 20.0)], window_s=60.0, now=T0 + 60.0) is None


def test_every_field_on_linear_data() -> None:
    # 15 s apart, +0.25 each step: exactly +1.0 per minute
    points = linear(5, 15.0, 20.0, 0.25)
    assert features(points, window_s=70.0, now=T0 + 70.0) == Features(
        device="dev-1",
        quantity="temperature",
        unit="C",
        window_s=70.0,
        count=5,
        mean=20.5,
        min=20.0,
        max=21.0,
        std=0.3535533905932738,
        slope_per_min=1.0,
        last=21.0,
        last_ts=T0 + 60.0,
        age_s=10.0,
    )


@pytest.mark.parametrize(
    ("step_s", "per_step", "slope"),
    [
        (15.0, 0.25, 1.0),
        (15.0, -0.25, -1.0),
        (30.0, 0.5, 1.0),
        (1.0, 0.125, 7.5),
        (60.0, 2.0, 2.0),
        (10.0, 0.0, 0.0),
    ],
)
def test_slope_per_minute_is_exact(step_s: float, per_step: float, slope: float) -> None:
    points = linear(5, step_s, 20.0, per_step)
    f = features(points, window_s=4 * step_s, now=T0 + 4 * step_s)
    assert f is not None
    assert f.count == 5
    assert f.slope_per_min == slope


def test_slope_is_least_squares_on_noisy_data() -> None:
    # residuals +0.1, -0.1, -0.1, +0.1 around a slope of 0.5/min: they cancel
    points = [(T0, 20.1), (T0 + 60, 20.4), (T0 + 120, 20.9), (T0 + 180, 21.6)]
    f = features(points, window_s=180.0, now=T0 + 180.0)
    assert f is not None
    assert f.slope_per_min == pytest.approx(0.5, abs=1e-12)


def test_slope_with_unequal_spacing() -> None:
    points = [(T0, 10.0), (T0 + 5, 10.5), (T0 + 45, 14.5)]  # 0.1 per second throughout
    f = features(points, window_s=60.0, now=T0 + 60.0)
    assert f is not None
    assert f.slope_per_min == pytest.approx(6.0, rel=1e-12)


def test_one_point_has_no_slope() -> None:
    assert features([(T0 + 30.0, 21.5)]) == Features(
        "dev-1", "temperature", "C", 60.0, 1, 21.5, 21.5, 21.5, 0.0, None, 21.5, T0 + 30.0, 30.0
    )


def test_points_at_one_instant_have_no_slope() -> None:
    f = features([(T0 + 30.0, 20.0), (T0 + 30.0, 22.0)])
    assert f is not None
    assert (f.count, f.mean, f.std, f.slope_per_min) == (2, 21.0, 1.0, None)


def test_window_edges_are_inclusive_and_the_future_is_ignored() -> None:
    now = T0 + 100.0
    points = [(now - 60.0 - 0.001, 1.0), (now - 60.0, 2.0), (now, 3.0), (now + 0.001, 100.0)]
    f = features(points, window_s=60.0, now=now)
    assert f is not None
    assert (f.count, f.min, f.max, f.last, f.last_ts, f.age_s) == (2, 2.0, 3.0, 3.0, now, 0.0)


def test_last_is_the_newest_point_whatever_the_order() -> None:
    points = [(T0 + 40.0, 22.0), (T0 + 50.0, 23.0), (T0 + 10.0, 21.0)]
    f = features(points, now=T0 + 55.0)
    assert f is not None
    assert (f.last, f.last_ts, f.age_s) == (23.0, T0 + 50.0, 5.0)
    assert f.slope_per_min == pytest.approx(
        60 * statistics.linear_regression([10.0, 40.0, 50.0], [21.0, 22.0, 23.0]).slope, rel=1e-12
    )


def test_age_grows_with_now() -> None:
    points = [(T0, 20.0)]
    ages = []
    for now in (T0, T0 + 1.5, T0 + 59.0):
        f = features(points, now=now)
        assert f is not None
        ages.append(f.age_s)
    assert ages == [0.0, 1.5, 59.0]


def test_windows_select_different_points() -> None:
    points = linear(16, 60.0, 10.0, 1.0)  # one a minute for 15 minutes
    now = T0 + 900.0
    counts = []
    for window in (60.0, 300.0, 900.0):
        f = features(points, window_s=window, now=now)
        assert f is not None
        counts.append((f.count, f.min, f.max, f.mean, f.slope_per_min))
    assert counts == [
        (2, 24.0, 25.0, 24.5, 1.0),
        (6, 20.0, 25.0, 22.5, 1.0),
        (16, 10.0, 25.0, 17.5, 1.0),
    ]


def test_as_dict() -> None:
    f = features([(T0 + 30.0, 21.5)])
    assert f is not None
    assert f.as_dict() == {
        "device": "dev-1",
        "quantity": "temperature",
        "unit": "C",
        "window_s": 60.0,
        "count": 1,
        "mean": 21.5,
        "min": 21.5,
        "max": 21.5,
        "std": 0.0,
        "slope_per_min": None,
        "last": 21.5,
        "last_ts": T0 + 30.0,
        "age_s": 30.0,
    }


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 600.0), st.floats(-1e3, 1e3)), min_size=1, max_size=40))
def test_statistics_match_the_statistics_module(raw: list[tuple[float, float]]) -> None:
    points = [(T0 + t, v) for t, v in raw]
    f = features(points, window_s=600.0, now=T0 + 600.0)
    assert f is not None
    values = [v for _, v in raw]
    assert f.count == len(values)
    assert (f.min, f.max) == (min(values), max(values))
    assert f.mean == pytest.approx(statistics.fmean(values), rel=1e-12, abs=1e-9)
    assert f.std == pytest.approx(statistics.pstdev(values), rel=1e-9, abs=1e-9)
    assert f.mean - 1e-9 <= f.max and f.min <= f.mean + 1e-9


@settings(max_examples=100, deadline=None)
@given(
    st.floats(-100.0, 100.0),
    st.floats(-10.0, 10.0),
    st.lists(st.integers(0, 3600), min_size=2, max_size=30, unique=True),
)
def test_slope_of_a_line_is_its_slope(
    intercept: float, per_min: float, quarters: list[int]
) -> None:
    offsets = [q / 4 for q in quarters]  # distinct times, a quarter second apart at least
    points = [(T0 + t, intercept + per_min * t / 60.0) for t in offsets]
    f = features(points, window_s=900.0, now=T0 + 900.0)
    assert f is not None
    assert f.slope_per_min == pytest.approx(per_min, rel=1e-6, abs=1e-6)


# -- normalisation ----------------------------------------------------------------------------

F = Features(
    "dev-1", "temperature", "C", 60.0, 5, 22.5, 20.0, 25.0, 2.5, 1.25, 25.0, T0 + 60.0, 0.0
)


def test_minmax_against_bounds() -> None:
    assert Normalizer("minmax", (10.0, 35.0)).normalize(F, mean=0.0, std=0.0) == {
        "mean": 0.5,
        "min": 0.4,
        "max": 0.6,
        "last": 0.6,
        "std": 0.1,
        "slope_per_min": 0.05,
    }


def test_minmax_without_bounds_gives_nothing() -> None:
    assert Normalizer("minmax", None).normalize(F, mean=20.0, std=2.0) == {}


def test_zscore_against_running_statistics() -> None:
    assert Normalizer("zscore", None).normalize(F, mean=20.0, std=2.0) == {
        "mean": 1.25,
        "min": 0.0,
        "max": 2.5,
        "last": 2.5,
        "std": 1.25,
        "slope_per_min": 0.625,
    }


def test_zscore_ignores_bounds() -> None:
    assert Normalizer("zscore", (10.0, 35.0)).normalize(F, mean=20.0, std=2.0)["mean"] == 1.25


@pytest.mark.parametrize("std", [0.0, -1.0])
def test_zscore_without_spread_gives_nothing(std: float) -> None:
    assert Normalizer("zscore", None).normalize(F, mean=20.0, std=std) == {}


def test_missing_slope_stays_missing() -> None:
    f = Features("dev-1", "temperature", "C", 60.0, 1, 20.0, 20.0, 20.0, 0.0, None, 20.0, T0, 0.0)
    assert Normalizer("minmax", (10.0, 30.0)).normalize(f, 0.0, 0.0) == {
        "mean": 0.5,
        "min": 0.5,
        "max": 0.5,
        "last": 0.5,
        "std": 0.0,
        "slope_per_min": None,
    }
