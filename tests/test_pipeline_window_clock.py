"""Attack 9 (issue 12): a future-dated reading must not stop the pruning of feature windows.

SPEC 1 lets a reading's ``ts`` be up to a day ahead of the agent's clock. If windows were pruned
relative to the newest reading, one such reading would keep every later point of its series in
memory for a day. They are pruned by the agent's clock (each reading's receive time) instead.
"""

from __future__ import annotations

from agent.config import Config
from agent.pipeline.core import Pipeline
from agent.pipeline.parse import Reading

T0 = 1_764_370_000.0
HORIZON = 60.0  # the longest feature window in these tests


def pipeline() -> Pipeline:
    return Pipeline(Config.model_validate({"features": {"windows": ["30s", "60s"]}}))


def received(value: float, recv: float, ts: float | None = None) -> Reading:
    return Reading("dev-1", "temperature", value, None, recv if ts is None else ts, ts, None, recv)


def held(p: Pipeline) -> int:
    """Points held in the series' window (what grows under the attack)."""
    return len(p._series[("dev-1", "temperature")].points)


def test_a_reading_a_day_ahead_does_not_stop_window_pruning() -> None:
    p = pipeline()
    p.process(received(20.0, T0, ts=T0 + 86_000))  # allowed by SPEC 1: less than a day ahead
    for i in range(1, 1001):  # one reading a second for 1000 s, 16 times the horizon
        p.process(received(20.0 + (i % 3) * 0.1, T0 + i))
    assert held(p) <= HORIZON + 2, f"{held(p)} points held for a {HORIZON:g}s window"


def test_the_future_reading_itself_leaves_once_the_horizon_has_passed_since_it_arrived() -> None:
    p = pipeline()
    p.process(received(20.0, T0, ts=T0 + 86_000))
    p.process(received(21.0, T0 + HORIZON + 1))
    assert held(p) == 1


def test_windows_still_hold_what_the_horizon_covers() -> None:
    p = pipeline()
    for i in range(120):
        p.process(received(20.0, T0 + i))
    assert HORIZON <= held(p) <= HORIZON + 2
    features = p.features("dev-1", "temperature", 30.0, now=T0 + 119)
    assert features is not None and features.count == 31


def test_a_late_reading_is_kept_while_inside_the_horizon_and_pruned_after() -> None:
    p = pipeline()
    p.process(received(20.0, T0 + 100))
    p.process(received(19.0, T0 + 101, ts=T0 + 90))  # sent 11 s before it arrived
    assert held(p) == 2
    p.process(received(20.0, T0 + 100 + HORIZON + 1))
    assert held(p) == 1
