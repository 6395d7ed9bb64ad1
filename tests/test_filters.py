"""Cleaning filters: Hampel, EWMA, moving median, deadband and running statistics."""

from __future__ import annotations

import statistics
from collections import deque

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agent.pipeline.filters import (
    MAD_TO_SIGMA,
    Ewma,
    Hampel,
    HampelVerdict,
    MovingMedian,
    RunningStats,
    ewma,
    hampel,
    outside_deadband,
)

# median 10, absolute deviations [0, 2, 2, 1, 1] -> MAD 1, so 3 sigmas = 3 * 1.4826 = 4.4478
WINDOW = [10.0, 12.0, 8.0, 11.0, 9.0]


# -- hampel -----------------------------------------------------------------------------------


def test_mad_to_sigma() -> None:
    assert MAD_TO_SIGMA == 1.4826


@pytest.mark.parametrize("window", [[], [20.0], [20.0, 20.0]])
def test_fewer_than_three_values_decide_nothing(window: list[float]) -> None:
    assert hampel(window, 1000.0, 3.0) == HampelVerdict(False, 1000.0)


@pytest.mark.parametrize(
    ("x", "verdict"),
    [
        (10.0, HampelVerdict(False, 10.0)),
        (14.44, HampelVerdict(False, 14.44)),
        (14.45, HampelVerdict(True, 10.0)),
        (5.56, HampelVerdict(False, 5.56)),
        (5.55, HampelVerdict(True, 10.0)),
        (1000.0, HampelVerdict(True, 10.0)),
        (-1000.0, HampelVerdict(True, 10.0)),
    ],
)
def test_hampel_three_sigmas(x: float, verdict: HampelVerdict) -> None:
    assert hampel(WINDOW, x, 3.0) == verdict


def test_hampel_sigmas_scale_the_limit() -> None:
    assert hampel(WINDOW, 12.0, 1.0) == HampelVerdict(True, 10.0)  # limit 1.4826
    assert hampel(WINDOW, 11.4, 1.0) == HampelVerdict(False, 11.4)
    assert hampel(WINDOW, 18.8, 6.0) == HampelVerdict(False, 18.8)  # limit 8.8956
    assert hampel(WINDOW, 18.8, 5.9) == HampelVerdict(True, 10.0)  # limit 8.74734


def test_hampel_accepts_a_deque() -> None:
    assert hampel(deque(WINDOW), 14.45, 3.0) == HampelVerdict(True, 10.0)


def test_hampel_even_window_uses_the_mean_of_the_middle_values() -> None:
    # median 2.5, deviations [1.5, 0.5, 0.5, 1.5] -> MAD 1.0
    assert hampel([1.0, 2.0, 3.0, 4.0], 100.0, 3.0) == HampelVerdict(True, 2.5)


def test_zero_mad_flags_every_change() -> None:
    flat = [20.0] * 5
    assert hampel(flat, 20.0, 3.0) == HampelVerdict(False, 20.0)
    assert hampel(flat, 20.01, 3.0) == HampelVerdict(True, 20.0)
    assert hampel(flat, 19.99, 3.0) == HampelVerdict(True, 20.0)


def test_zero_mad_with_mostly_equal_values() -> None:
    # a single odd value does not move the median or the MAD
    window = [20.0, 20.0, 20.0, 20.0, 25.0]
    assert hampel(window, 20.5, 3.0) == HampelVerdict(True, 20.0)


def test_min_deviation_spares_quantised_steps() -> None:
    flat = [20.0] * 5
    assert hampel(flat, 20.5, 3.0, min_deviation=0.5) == HampelVerdict(False, 20.5)
    assert hampel(flat, 19.5, 3.0, min_deviation=0.5) == HampelVerdict(False, 19.5)
    assert hampel(flat, 20.5001, 3.0, min_deviation=0.5) == HampelVerdict(True, 20.0)
    assert hampel(flat, 19.4999, 3.0, min_deviation=0.5) == HampelVerdict(True, 20.0)


def test_min_deviation_only_raises_the_limit() -> None:
    # the sigma limit (4.4478) is larger than min_deviation, so it still decides
    assert hampel(WINDOW, 14.0, 3.0, min_deviation=1.0) == HampelVerdict(False, 14.0)
    assert hampel(WINDOW, 14.45, 3.0, min_deviation=1.0) == HampelVerdict(True, 10.0)
    # and a min_deviation above it takes over
    assert hampel(WINDOW, 14.45, 3.0, min_deviation=5.0) == HampelVerdict(False, 14.45)
    assert hampel(WINDOW, 15.01, 3.0, min_deviation=5.0) == HampelVerdict(True, 10.0)


# -- the Hampel object ------------------------------------------------------------------------


def test_hampel_filter_is_causal_and_keeps_raw_values() -> None:
    f = Hampel(window=3, sigmas=3.0)
    verdicts = [f(x) for x in (20.0, 20.0, 20.0, 50.0, 20.0, 50.0, 50.0, 50.0)]
    assert verdicts == [
        HampelVerdict(False, 20.0),  # nothing to compare with yet
        HampelVerdict(False, 20.0),
        HampelVerdict(False, 20.0),
        HampelVerdict(True, 20.0),  # [20, 20, 20]
        HampelVerdict(False, 20.0),  # [20, 20, 50]: the spike stays in the window
        HampelVerdict(True, 20.0),  # [20, 50, 20]
        HampelVerdict(False, 50.0),  # [50, 20, 50]: a real step is accepted
        HampelVerdict(False, 50.0),
    ]


def test_hampel_filter_first_values_are_never_outliers() -> None:
    f = Hampel(window=7, sigmas=3.0)
    verdicts = [f(x) for x in (20.0, 1000.0, -1000.0, 20.0, 5000.0)]
    assert [v.outlier for v in verdicts] == [False, False, False, False, True]
    assert verdicts[-1] == HampelVerdict(True, 20.0)  # window [20, 1000, -1000, 20]: MAD 490


def test_hampel_filter_forgets_beyond_its_window() -> None:
    f = Hampel(window=3, sigmas=3.0)
    for x in (100.0, 100.0, 100.0, 20.0, 20.0, 20.0):
        f(x)
    assert f(100.0) == HampelVerdict(True, 20.0)


def test_hampel_seed_fills_the_window_without_verdicts() -> None:
    f = Hampel(window=5, sigmas=3.0, min_deviation=0.2)
    for x in (20.0, 20.1, 20.0, 19.9, 20.0):
        f.seed(x)
    assert f(20.2) == HampelVerdict(False, 20.2)
    assert f(35.0) == HampelVerdict(True, 20.0)


# -- ewma -------------------------------------------------------------------------------------


def test_ewma_starts_at_the_first_value() -> None:
    assert ewma(None, 21.5, 0.3) == 21.5


@pytest.mark.parametrize(
    ("previous", "x", "alpha", "expected"),
    [
        (10.0, 20.0, 0.5, 15.0),
        (10.0, 20.0, 0.25, 12.5),
        (10.0, 20.0, 1.0, 20.0),
        (20.0, 10.0, 0.3, 17.0),
    ],
)
def test_ewma_weights_the_new_value_by_alpha(
    previous: float, x: float, alpha: float, expected: float
) -> None:
    assert ewma(previous, x, alpha) == pytest.approx(expected, rel=1e-15)


def test_ewma_object() -> None:
    smooth = Ewma(0.5)
    assert smooth.value is None
    assert [smooth(x) for x in (10.0, 20.0, 20.0, 0.0)] == [10.0, 15.0, 17.5, 8.75]
    assert smooth.value == 8.75


@settings(max_examples=100, deadline=None)
@given(st.floats(-1e9, 1e9), st.floats(-1e9, 1e9), st.floats(0.001, 1.0))
def test_ewma_lies_between_previous_and_new(previous: float, x: float, alpha: float) -> None:
    y = ewma(previous, x, alpha)
    slack = 1e-9 * max(1.0, abs(previous), abs(x))
    assert min(previous, x) - slack <= y <= max(previous, x) + slack


# -- moving median ----------------------------------------------------------------------------


def test_moving_median() -> None:
    median = MovingMedian(3)
    assert [median(x) for x in (5.0, 1.0, 9.0, 7.0, 2.0, 2.0)] == [5.0, 3.0, 5.0, 7.0, 7.0, 2.0]


def test_moving_median_of_one_is_the_identity() -> None:
    median = MovingMedian(1)
    assert [median(x) for x in (5.0, 1.0, 9.0)] == [5.0, 1.0, 9.0]


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 9), st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40))
def test_moving_median_is_the_median_of_the_last_window(window: int, xs: list[float]) -> None:
    median = MovingMedian(window)
    for i, x in enumerate(xs):
        assert median(x) == statistics.median(xs[max(0, i + 1 - window) : i + 1])


# -- deadband ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last", "x", "deadband", "expected"),
    [
        (None, 20.0, 0.5, True),  # nothing stored yet
        (20.0, 20.0, None, True),  # no deadband
        (20.0, 20.0, 0.0, True),  # a zero deadband stores everything
        (20.0, 20.4, 0.5, False),
        (20.0, 19.6, 0.5, False),
        (20.0, 20.5, 0.5, True),  # a change of exactly the deadband is written
        (20.0, 19.5, 0.5, True),
        (20.0, 25.0, 0.5, True),
    ],
)
def test_outside_deadband(
    last: float | None, x: float, deadband: float | None, expected: bool
) -> None:
    assert outside_deadband(last, x, deadband) is expected


# -- running statistics -----------------------------------------------------------------------


def test_running_stats_empty_and_single() -> None:
    stats = RunningStats()
    assert (stats.n, stats.mean, stats.std) == (0, 0.0, 0.0)
    stats.add(21.5)
    assert (stats.n, stats.mean, stats.std) == (1, 21.5, 0.0)


def test_running_stats_population_std() -> None:
    stats = RunningStats()
    for x in (2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0):
        stats.add(x)
    assert (stats.n, stats.mean, stats.std) == (8, 5.0, 2.0)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=60))
def test_running_stats_match_statistics(xs: list[float]) -> None:
    stats = RunningStats()
    for x in xs:
        stats.add(x)
    assert stats.n == len(xs)
    assert stats.mean == pytest.approx(statistics.fmean(xs), rel=1e-9, abs=1e-6)
    assert stats.std == pytest.approx(statistics.pstdev(xs), rel=1e-6, abs=1e-6)


# -- hampel properties ------------------------------------------------------------------------

windows = st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=15)


@settings(max_examples=150, deadline=None)
@given(windows, st.floats(-1e4, 1e4), st.floats(0.5, 6.0), st.floats(0.0, 10.0))
def test_hampel_returns_the_input_or_the_median(
    window: list[float], x: float, sigmas: float, min_deviation: float
) -> None:
    verdict = hampel(window, x, sigmas, min_deviation)
    assert verdict.value == (statistics.median(window) if verdict.outlier else x)


@settings(max_examples=150, deadline=None)
@given(windows, st.floats(-1.0, 1.0), st.floats(0.5, 6.0), st.floats(0.0, 10.0))
def test_hampel_never_flags_within_min_deviation(
    window: list[float], fraction: float, sigmas: float, min_deviation: float
) -> None:
    x = statistics.median(window) + fraction * min_deviation
    assume(abs(x - statistics.median(window)) <= min_deviation)  # after rounding
    assert not hampel(window, x, sigmas, min_deviation).outlier


@settings(max_examples=150, deadline=None)
@given(windows, st.floats(0.5, 6.0))
def test_hampel_never_flags_the_median(window: list[float], sigmas: float) -> None:
    med = statistics.median(window)
    assert hampel(window, med, sigmas) == HampelVerdict(False, med)
