"""The stateful pipeline: conversion, range, duplicates, cleaning, deadband, features, restore."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config import Config, load_config
from agent.errors import RejectedReading
from agent.pipeline.core import DEDUP_MEMORY, Pipeline, Processed
from agent.pipeline.parse import Reading, parse_reading

EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "config" / "agent.example.yaml"
T0 = 1_764_370_000.0


def make(sensors: dict[str, Any] | None = None, windows: list[str] | None = None) -> Pipeline:
    data: dict[str, Any] = {"sensors": sensors or {}}
    if windows is not None:
        data["features"] = {"windows": windows}
    return Pipeline(Config.model_validate(data))


def example() -> Pipeline:
    return Pipeline(load_config(EXAMPLE_CONFIG))


def reading(
    value: float,
    t: float = T0,
    *,
    seq: int | None = None,
    sent: bool = False,
    unit: str | None = None,
    device: str = "dev-1",
    quantity: str = "temperature",
) -> Reading:
    """A reading received at ``t``; ``sent`` makes ``t`` the device's own ts as well."""
    return Reading(device, quantity, value, unit, t, t if sent else None, seq, t)


def message(
    payload: bytes, topic: str = "edge/sensors/dev-1/temperature", recv_ts: float = T0
) -> Reading:
    return parse_reading(topic, payload, recv_ts, prefix="edge", max_bytes=4096)


def process(p: Pipeline, r: Reading) -> Processed:
    out = p.process(r)
    assert out is not None
    return out


def rejection(p: Pipeline, r: Reading) -> str:
    with pytest.raises(RejectedReading) as info:
        p.process(r)
    assert info.value.kind in ("unit", "out-of-range")
    return str(info.value)


# -- conversion and plausible range -----------------------------------------------------------


def test_fahrenheit_is_converted_to_the_canonical_unit() -> None:
    r = message(b'{"value": 68, "unit": "F", "seq": 1, "ts": 1764369999.5}')
    out = process(example(), r)
    assert out.reading is r
    assert out.unit == "C"
    assert out.value == pytest.approx(20.0, abs=1e-12)
    assert (out.reading.value, out.reading.unit) == (68.0, "F")
    assert (out.outlier, out.store) == (False, True)


def test_kelvin_and_aliases_are_converted() -> None:
    p = example()
    assert process(p, reading(300.0, unit="K")).value == pytest.approx(26.85, abs=1e-9)
    assert process(p, reading(68.0, unit="°F")).value == pytest.approx(20.0, abs=1e-12)
    assert process(p, reading(21.0, unit="celsius")).value == 21.0


def test_range_is_checked_after_conversion() -> None:
    # 200 is inside [-40, 85] only if nobody converts it: 200 F is 93.3 C
    assert rejection(example(), message(b'{"value": 200, "unit": "F"}')) == (
        "value 93.3333 C is outside the plausible range [-40, 85]"
    )
    # and 150 F (65.6 C) is fine although 150 is not
    assert process(example(), message(b'{"value": 150, "unit": "F"}')).value == (
        pytest.approx(65.5555555555, abs=1e-9)
    )


def test_range_bounds_are_inclusive() -> None:
    p = example()
    assert process(p, reading(-40.0)).value == -40.0
    assert process(p, reading(85.0, T0 + 1)).value == 85.0
    assert process(p, reading(-40.0, T0 + 2, unit="F")).value == -40.0
    assert rejection(p, reading(85.001, T0 + 3)) == (
        "value 85.001 C is outside the plausible range [-40, 85]"
    )
    assert rejection(p, reading(-40.5, T0 + 4)) == (
        "value -40.5 C is outside the plausible range [-40, 85]"
    )


def test_a_reading_without_unit_is_in_the_canonical_unit() -> None:
    p = example()
    assert process(p, reading(80.0)).unit == "C"
    assert rejection(p, reading(86.0)) == "value 86 C is outside the plausible range [-40, 85]"


def test_rejection_kinds() -> None:
    p = example()
    with pytest.raises(RejectedReading) as info:
        p.process(reading(21.0, unit="%"))
    assert info.value.kind == "unit"
    with pytest.raises(RejectedReading) as info:
        p.process(reading(90.0))
    assert info.value.kind == "out-of-range"


def test_incompatible_and_unknown_units_are_rejected() -> None:
    p = example()
    assert rejection(p, reading(21.0, unit="%")) == "unit '%' cannot be converted to 'C'"
    assert rejection(p, reading(21.0, unit="degrees")) == "unknown unit 'degrees'"


def test_range_without_a_unit_reads_cleanly() -> None:
    p = make({"level": {"range": [0, 100]}})
    assert rejection(p, reading(101.0, quantity="level")) == (
        "value 101 is outside the plausible range [0, 100]"
    )


def test_unconfigured_quantity_is_kept_as_sent() -> None:
    p = example()
    out = process(
        p, message(b'{"value": 123456.5, "unit": "lx"}', topic="edge/sensors/dev-1/light")
    )
    assert (out.value, out.unit, out.clean, out.outlier, out.store) == (
        123456.5,
        "lx",
        123456.5,
        False,
        True,
    )
    assert process(p, reading(-1e9, T0 + 1, quantity="light")).unit is None


def test_rejected_reading_leaves_no_trace() -> None:
    p = example()
    assert rejection(p, reading(99.0, seq=7, sent=True)) == (
        "value 99 C is outside the plausible range [-40, 85]"
    )
    assert p.series() == []
    # the same seq with a plausible value is not taken for a duplicate
    assert process(p, reading(21.0, seq=7, sent=True)).value == 21.0


# -- duplicates -------------------------------------------------------------------------------


def test_redelivery_with_same_seq_and_ts_is_dropped() -> None:
    p = make()
    assert process(p, reading(21.0, T0, seq=5, sent=True)).value == 21.0
    assert p.process(reading(21.0, T0, seq=5, sent=True)) is None
    assert p.process(Reading("dev-1", "temperature", 21.0, None, T0, T0, 5, T0 + 30)) is None


def test_same_seq_with_another_ts_is_a_new_reading() -> None:
    # a device that restarted and counts from 0 again
    p = make()
    process(p, reading(21.0, T0, seq=0, sent=True))
    assert process(p, reading(21.5, T0 + 60, seq=0, sent=True)).value == 21.5


def test_same_seq_without_ts_is_a_duplicate() -> None:
    p = make()
    process(p, reading(21.0, T0, seq=9))
    assert p.process(reading(21.0, T0 + 5, seq=9)) is None


def test_readings_without_seq_are_never_duplicates() -> None:
    p = make()
    outs = [p.process(reading(21.0, T0, sent=True)) for _ in range(3)]
    assert [o is not None and o.store for o in outs] == [True, True, True]


def test_duplicates_are_per_series() -> None:
    p = make()
    process(p, reading(21.0, T0, seq=1, sent=True))
    assert process(p, reading(21.0, T0, seq=1, sent=True, device="dev-2")).value == 21.0
    assert process(p, reading(40.0, T0, seq=1, sent=True, quantity="humidity")).value == 40.0


def test_a_duplicate_changes_nothing() -> None:
    p = make({"temperature": {"deadband": 0.5}})
    process(p, reading(20.0, T0, seq=1, sent=True))
    assert p.process(reading(20.0, T0, seq=1, sent=True)) is None
    f = p.features("dev-1", "temperature", now=T0)
    assert f is not None
    assert f.count == 1


def test_duplicate_memory_is_bounded() -> None:
    assert DEDUP_MEMORY == 4096
    p = make()
    for seq in range(DEDUP_MEMORY + 1):
        process(p, reading(21.0, T0 + seq, seq=seq))
    assert p.process(reading(21.0, T0, seq=DEDUP_MEMORY)) is None  # still remembered
    assert p.process(reading(21.0, T0, seq=1)) is None
    assert process(p, reading(21.0, T0, seq=0)).value == 21.0  # forgotten: the oldest


def test_seen_preloads_duplicate_detection() -> None:
    p = make()
    p.seen("dev-1", "temperature", [(1, T0), (2, T0 + 1), (3, None)])
    assert p.process(reading(21.0, T0, seq=1, sent=True)) is None
    assert p.process(reading(21.0, T0 + 1, seq=2, sent=True)) is None
    assert p.process(reading(21.0, T0 + 2, seq=3)) is None
    assert process(p, reading(21.0, T0 + 3, seq=4)).value == 21.0


# -- deadband ---------------------------------------------------------------------------------


def test_deadband_suppresses_small_changes_from_the_last_stored_value() -> None:
    p = make({"temperature": {"deadband": 0.5}})
    values = [20.0, 20.3, 20.49, 20.5, 20.1, 20.0, 19.6, 19.5]
    stored = [process(p, reading(v, T0 + i)).store for i, v in enumerate(values)]
    assert stored == [True, False, False, True, False, True, False, True]


def test_suppressed_readings_still_count_in_features() -> None:
    p = make({"temperature": {"deadband": 10.0}})
    for i, v in enumerate([20.0, 21.0, 22.0, 23.0]):
        process(p, reading(v, T0 + i))
    f = p.features("dev-1", "temperature", now=T0 + 3)
    assert f is not None
    assert (f.count, f.mean, f.last) == (4, 21.5, 23.0)


def test_deadband_compares_cleaned_values() -> None:
    p = make({"temperature": {"deadband": 1.0, "smooth": {"ewma": 0.5}}})
    outs = [process(p, reading(v, T0 + i)) for i, v in enumerate([20.0, 21.5, 21.5, 21.5])]
    assert [o.clean for o in outs] == [20.0, 20.75, 21.125, 21.3125]
    assert [o.store for o in outs] == [True, False, True, False]


def test_without_deadband_everything_is_stored() -> None:
    p = make({"temperature": {}})
    assert all(process(p, reading(20.0, T0 + i)).store for i in range(5))


# -- outliers and smoothing -------------------------------------------------------------------


def test_outlier_is_replaced_by_the_median_and_always_stored() -> None:
    p = make({"temperature": {"outlier": {"window": 3, "sigmas": 3}, "deadband": 100.0}})
    outs = [process(p, reading(v, T0 + i)) for i, v in enumerate([20.0, 20.0, 20.0, 50.0, 20.0])]
    assert [(o.value, o.clean, o.outlier, o.store) for o in outs] == [
        (20.0, 20.0, False, True),
        (20.0, 20.0, False, False),
        (20.0, 20.0, False, False),
        (50.0, 20.0, True, True),  # inside the deadband, but kept so the cleaning is audited
        (20.0, 20.0, False, False),
    ]


def test_outlier_does_not_reach_the_features() -> None:
    p = make({"temperature": {"outlier": {"window": 5, "sigmas": 3}}})
    for i, v in enumerate([20.0, 20.5, 19.5, 20.0, 60.0, 20.0]):
        process(p, reading(v, T0 + i))
    f = p.features("dev-1", "temperature", now=T0 + 5)
    assert f is not None
    assert (f.count, f.max, f.min) == (6, 20.5, 19.5)


def test_example_min_deviation_spares_small_steps() -> None:
    p = example()  # window 7, 3 sigmas, min_deviation 0.2, ewma 0.3
    flat = [process(p, reading(21.0, T0 + i)) for i in range(4)]
    assert not any(o.outlier for o in flat)
    step = process(p, reading(21.2, T0 + 4))  # MAD 0, but within min_deviation
    assert step.outlier is False
    assert step.clean == pytest.approx(21.06, abs=1e-12)
    spike = process(p, reading(30.0, T0 + 5))
    assert (spike.value, spike.outlier, spike.store) == (30.0, True, True)
    assert spike.clean == pytest.approx(21.042, abs=1e-12)  # the median 21 into the ewma


def test_ewma_smoothing() -> None:
    p = make({"temperature": {"smooth": {"ewma": 0.5}}})
    assert [process(p, reading(v, T0 + i)).clean for i, v in enumerate([10.0, 20.0, 20.0])] == [
        10.0,
        15.0,
        17.5,
    ]


def test_median_smoothing() -> None:
    p = make({"temperature": {"smooth": {"median": 3}}})
    cleans = [process(p, reading(v, T0 + i)).clean for i, v in enumerate([5.0, 1.0, 9.0, 7.0])]
    assert cleans == [5.0, 3.0, 5.0, 7.0]


def test_outlier_then_smoothing() -> None:
    p = make({"temperature": {"outlier": {"window": 3, "sigmas": 3}, "smooth": {"ewma": 0.5}}})
    outs = [process(p, reading(v, T0 + i)) for i, v in enumerate([20.0, 22.0, 18.0, 80.0, 21.0])]
    # 80 is replaced by the median 20 of [20, 22, 18] before it is smoothed
    assert [o.outlier for o in outs] == [False, False, False, True, False]
    assert [o.clean for o in outs] == [20.0, 21.0, 19.5, 19.75, 20.375]


def test_series_have_separate_state() -> None:
    p = make({"temperature": {"smooth": {"ewma": 0.5}}})
    process(p, reading(10.0, T0, device="a"))
    assert process(p, reading(30.0, T0, device="b")).clean == 30.0
    assert process(p, reading(30.0, T0 + 1, device="a")).clean == 20.0
    assert p.series() == [("a", "temperature"), ("b", "temperature")]


# -- features through the pipeline ------------------------------------------------------------


def test_features_default_to_the_shortest_window() -> None:
    p = make(windows=["15m", "1m", "5m"])
    assert p.windows == [60.0, 300.0, 900.0]
    for k in range(16):
        process(p, reading(10.0 + k, T0 + 60.0 * k))
    now = T0 + 900.0
    short = p.features("dev-1", "temperature", now=now)
    assert short is not None
    assert (short.window_s, short.count, short.mean, short.slope_per_min) == (60.0, 2, 24.5, 1.0)
    full = p.features("dev-1", "temperature", window_s=900.0, now=now)
    assert full is not None
    assert (full.count, full.min, full.max, full.age_s) == (16, 10.0, 25.0, 0.0)


def test_features_of_an_unknown_series() -> None:
    assert make().features("nobody", "temperature", now=T0) is None


def test_features_carry_the_canonical_unit() -> None:
    p = example()
    process(p, reading(68.0, T0, unit="F"))
    f = p.features("dev-1", "temperature", now=T0 + 30.0)
    assert f is not None
    assert (f.unit, f.age_s) == ("C", 30.0)
    assert f.last == pytest.approx(20.0, abs=1e-12)


def test_points_beyond_the_longest_window_are_dropped() -> None:
    p = make(windows=["1m", "5m"])
    process(p, reading(1.0, T0))
    process(p, reading(2.0, T0 + 300.0))  # exactly the longest window later: kept
    f = p.features("dev-1", "temperature", window_s=10_000.0, now=T0 + 300.0)
    assert f is not None
    assert f.count == 2
    process(p, reading(3.0, T0 + 300.5))
    f = p.features("dev-1", "temperature", window_s=10_000.0, now=T0 + 300.5)
    assert f is not None
    assert (f.count, f.min) == (2, 2.0)


def test_readings_without_ts_are_placed_at_receive_time() -> None:
    p = make()
    process(p, message(b"21.5", recv_ts=T0 + 10.0))
    process(p, message(b'{"value": 22.5, "ts": 1764369950}', recv_ts=T0 + 20.0))
    f = p.features("dev-1", "temperature", window_s=60.0, now=T0 + 20.0)
    assert f is not None
    assert (f.count, f.last, f.last_ts) == (1, 21.5, T0 + 10.0)  # 22.5 is 70 s old


# -- normalisation ----------------------------------------------------------------------------


def test_minmax_against_the_configured_normalize_range() -> None:
    p = example()  # temperature normalize range [10, 35]
    for i, v in enumerate([20.0, 22.5, 25.0]):
        process(p, reading(v, T0 + i * 10.0))
    # the example smooths with ewma 0.3: cleans 20, 20.75, 22.025
    f = p.features("dev-1", "temperature", now=T0 + 20.0)
    assert f is not None
    norm = p.normalized(f)
    assert norm["min"] == pytest.approx((20.0 - 10.0) / 25.0, abs=1e-12)
    assert norm["max"] == pytest.approx((22.025 - 10.0) / 25.0, abs=1e-12)
    assert norm["mean"] == pytest.approx((f.mean - 10.0) / 25.0, abs=1e-12)
    assert norm["std"] == pytest.approx(f.std / 25.0, abs=1e-12)
    assert f.slope_per_min is not None
    assert norm["slope_per_min"] == pytest.approx(f.slope_per_min / 25.0, abs=1e-12)


def test_minmax_falls_back_to_the_plausible_range() -> None:
    p = example()  # humidity: range [0, 100], no normalize range; median 3 smoothing
    process(p, reading(40.0, T0, quantity="humidity"))
    process(p, reading(60.0, T0 + 1, quantity="humidity"))
    f = p.features("dev-1", "humidity", now=T0 + 1)
    assert f is not None
    assert p.normalized(f) == {
        "mean": 0.45,
        "min": 0.4,
        "max": 0.5,
        "last": 0.5,
        "std": 0.05,
        "slope_per_min": 6.0,
    }


def test_minmax_without_any_range_gives_nothing() -> None:
    p = make()
    process(p, reading(1.0, T0, quantity="light"))
    f = p.features("dev-1", "light", now=T0)
    assert f is not None
    assert p.normalized(f) == {}


def test_zscore_against_the_running_statistics() -> None:
    p = example()  # co2: zscore, outlier window 9 sigmas 4, ewma 0.5
    for i, v in enumerate([400.0, 600.0, 500.0]):
        process(p, reading(v, T0 + i, quantity="co2"))
    # cleans: 400, 500, 500 -> running mean 466.67, population std 47.14
    f = p.features("dev-1", "co2", now=T0 + 2)
    assert f is not None
    norm = p.normalized(f)
    std = (20000.0 / 9.0) ** 0.5
    assert norm["mean"] == pytest.approx(0.0, abs=1e-12)
    assert norm["min"] == pytest.approx((400.0 - 1400.0 / 3) / std, abs=1e-12)
    assert norm["max"] == pytest.approx((500.0 - 1400.0 / 3) / std, abs=1e-12)
    assert norm["last"] == pytest.approx((500.0 - 1400.0 / 3) / std, abs=1e-12)


def test_zscore_with_one_value_gives_nothing() -> None:
    p = example()
    process(p, reading(400.0, T0, quantity="co2"))
    f = p.features("dev-1", "co2", now=T0)
    assert f is not None
    assert p.normalized(f) == {}


def test_normalized_for_an_unknown_series() -> None:
    p = make()
    other = make()
    process(other, reading(20.0))
    f = other.features("dev-1", "temperature", now=T0)
    assert f is not None
    assert p.normalized(f) == {}


# -- restore after a restart ------------------------------------------------------------------


def stored_rows(outs: list[Processed]) -> list[tuple[float, float, float]]:
    """What the database holds for these results: ``(ts, value, clean)`` of the stored ones."""
    return [(o.reading.ts, o.value, o.clean) for o in outs if o.store]


def test_restore_refills_the_feature_window() -> None:
    p = example()
    p.restore(
        "dev-1", "temperature", [(T0, 20.0, 20.0), (T0 + 30, 21.0, 20.3), (T0 + 60, 22.0, 20.81)]
    )
    f = p.features("dev-1", "temperature", now=T0 + 60)
    assert f is not None
    assert (f.count, f.min, f.max, f.last, f.last_ts) == (3, 20.0, 20.81, 20.81, T0 + 60)
    assert p.series() == [("dev-1", "temperature")]


def test_restore_continues_the_deadband_from_the_last_stored_value() -> None:
    p = make({"temperature": {"deadband": 0.5}})
    p.restore("dev-1", "temperature", [(T0, 20.0, 20.0), (T0 + 1, 21.0, 21.0)])
    assert process(p, reading(21.4, T0 + 2)).store is False
    assert process(p, reading(21.5, T0 + 3)).store is True


def test_restore_seeds_the_outlier_window_with_raw_values() -> None:
    p = make({"temperature": {"outlier": {"window": 5, "sigmas": 3}}})
    p.restore("dev-1", "temperature", [(T0 + i, 20.0, 20.0) for i in range(5)])
    out = process(p, reading(35.0, T0 + 5))
    assert (out.outlier, out.clean) == (True, 20.0)


def test_restore_continues_the_ewma() -> None:
    p = make({"temperature": {"smooth": {"ewma": 0.5}}})
    p.restore("dev-1", "temperature", [(T0, 10.0, 10.0), (T0 + 1, 30.0, 20.0)])
    assert process(p, reading(30.0, T0 + 2)).clean == 25.0


def test_restore_nothing() -> None:
    p = make({"temperature": {"deadband": 0.5, "smooth": {"ewma": 0.5}}})
    p.restore("dev-1", "temperature", [])
    assert p.features("dev-1", "temperature", now=T0) is None
    out = process(p, reading(20.0, T0))
    assert (out.clean, out.store) == (20.0, True)


SMOOTHERS = [
    pytest.param({"ewma": 0.3}, id="ewma"),
    pytest.param({"median": 3}, id="median"),
]


@pytest.mark.parametrize("smooth", SMOOTHERS)
def test_restore_continues_exactly_where_a_running_pipeline_is(smooth: dict[str, Any]) -> None:
    sensors = {
        "temperature": {
            "unit": "C",
            "range": [-40, 85],
            "smooth": smooth,
            "outlier": {"window": 5, "sigmas": 3, "min_deviation": 0.2},
        }
    }
    before = [21.0, 21.6, 20.4, 21.2, 20.8, 21.4]
    after = [22.9, 21.1, 21.5, 30.0, 21.3]
    running = make(sensors)
    history = [
        process(running, reading(v, T0 + 10 * i, seq=i, sent=True)) for i, v in enumerate(before)
    ]
    restarted = make(sensors)
    restarted.seen(
        "dev-1", "temperature", [(o.reading.seq or 0, o.reading.sent_ts) for o in history]
    )
    restarted.restore("dev-1", "temperature", stored_rows(history))
    for i, v in enumerate(after, start=len(before)):
        r = reading(v, T0 + 10 * i, seq=i, sent=True)
        a, b = process(running, r), process(restarted, r)
        assert (b.clean, b.outlier, b.store) == (a.clean, a.outlier, a.store)
    assert restarted.process(reading(before[0], T0, seq=0, sent=True)) is None
    now = T0 + 10 * (len(before) + len(after))
    assert restarted.features("dev-1", "temperature", window_s=900.0, now=now) == (
        running.features("dev-1", "temperature", window_s=900.0, now=now)
    )
