"""Attack 6 (issue 12): new quantity or device names from the wire cannot grow series without
bound. ``sensors.strict`` refuses quantities not configured; ``max_series_per_device`` and
``max_series`` cap the rest. Series restored from the database are kept whatever the caps."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from agent.config import Config
from agent.errors import RejectedReading
from agent.pipeline.core import Pipeline
from agent.pipeline.parse import Reading

T0 = 1_764_370_000.0


def make(**sensors: Any) -> Pipeline:
    return Pipeline(Config.model_validate({"sensors": {"temperature": {"unit": "C"}, **sensors}}))


def reading(device: str, quantity: str, t: float = T0) -> Reading:
    return Reading(device, quantity, 20.0, None, t, None, None, t)


def refusal(p: Pipeline, r: Reading) -> RejectedReading:
    with pytest.raises(RejectedReading) as info:
        p.process(r)
    return info.value


def test_a_flood_of_new_quantity_names_makes_at_most_the_cap_of_series() -> None:
    p = make(max_series_per_device=8)
    refused = 0
    for i in range(500):
        try:
            p.process(reading("dev-1", f"q{i}"))
        except RejectedReading as exc:
            assert exc.kind == "series-limit" and "sensors.max_series_per_device" in str(exc)
            refused += 1
    assert len(p.series()) == 8 and refused == 492


def test_the_default_cap_holds_without_any_new_key() -> None:
    p = Pipeline(Config.model_validate({}))
    for i in range(200):
        with contextlib.suppress(RejectedReading):
            p.process(reading("dev-1", f"q{i}"))
    assert len(p.series()) == 32


def test_new_devices_are_capped_in_all() -> None:
    p = make(max_series=10)
    for i in range(50):
        try:
            p.process(reading(f"dev-{i}", "temperature"))
        except RejectedReading as exc:
            assert exc.kind == "series-limit" and "sensors.max_series" in str(exc)
    assert len(p.series()) == 10


def test_known_series_keep_working_when_the_cap_is_reached() -> None:
    p = make(max_series_per_device=2)
    p.process(reading("dev-1", "temperature"))
    p.process(reading("dev-1", "humidity"))
    refusal(p, reading("dev-1", "co2"))
    assert p.process(reading("dev-1", "temperature", T0 + 1)) is not None


def test_strict_refuses_quantities_not_configured() -> None:
    p = make(strict=True)
    why = refusal(p, reading("dev-1", "humidity"))
    assert why.kind == "unknown-quantity" and "sensors.strict" in str(why)
    assert p.process(reading("dev-1", "temperature")) is not None
    assert p.series() == [("dev-1", "temperature")]


def test_series_restored_from_the_database_are_kept_beyond_the_cap() -> None:
    p = make(max_series_per_device=1)
    for q in ("a", "b", "c"):
        p.restore("dev-1", q, [(T0, 1.0, 1.0)])
    assert len(p.series()) == 3
    assert p.process(reading("dev-1", "b", T0 + 1)) is not None
    assert refusal(p, reading("dev-1", "d")).kind == "series-limit"
