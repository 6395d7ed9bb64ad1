"""Unit conversion to a quantity's canonical unit."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import RejectedReading
from agent.units import canonical_name, convert, known_unit


@pytest.mark.parametrize(
    ("value", "unit", "to", "expected"),
    [
        (0.0, "C", "F", 32.0),
        (100.0, "C", "F", 212.0),
        (-40.0, "C", "F", -40.0),
        (37.0, "C", "F", 98.6),
        (32.0, "F", "C", 0.0),
        (212.0, "F", "C", 100.0),
        (-40.0, "F", "C", -40.0),
        (68.0, "F", "C", 20.0),
        (200.0, "F", "C", 93.33333333333333),
        (273.15, "K", "C", 0.0),
        (300.0, "K", "C", 26.850000000000023),
        (0.0, "K", "C", -273.15),
        (0.0, "C", "K", 273.15),
        (-273.15, "C", "K", 0.0),
        (0.0, "K", "F", -459.67),
        (32.0, "F", "K", 273.15),
    ],
)
def test_temperature(value: float, unit: str, to: str, expected: float) -> None:
    assert convert(value, unit, to) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_kelvin_to_celsius_is_exact_at_the_offset() -> None:
    assert convert(273.15, "K", "C") == 0.0
    assert convert(0.0, "K", "C") == -273.15


def test_same_unit_returns_the_value_untouched() -> None:
    for unit in ("C", "F", "K", "%", "ppm"):
        assert convert(21.123456789, unit, unit) == 21.123456789


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("°C", "C"),
        ("degC", "C"),
        ("celsius", "C"),
        ("°F", "F"),
        ("degF", "F"),
        ("fahrenheit", "F"),
        ("kelvin", "K"),
        ("percent", "%"),
        ("lux", "lx"),
        ("w", "W"),
        ("kw", "kW"),
    ],
)
def test_aliases(alias: str, canonical: str) -> None:
    assert canonical_name(alias) == canonical
    assert known_unit(alias)


def test_canonical_names_map_to_themselves() -> None:
    for unit in ("C", "F", "K", "%", "ppm", "lx", "W", "kW", "hPa", "m/s"):
        assert canonical_name(unit) == unit
    assert canonical_name("X") == "X"


@pytest.mark.parametrize(
    ("value", "unit", "to", "expected"),
    [
        (68.0, "°F", "C", 20.0),
        (68.0, "degF", "celsius", 20.0),
        (20.0, "celsius", "°F", 68.0),
        (293.15, "kelvin", "degC", 20.0),
        (20.0, "°C", "C", 20.0),
        (20.0, "degC", "celsius", 20.0),
    ],
)
def test_aliases_convert(value: float, unit: str, to: str, expected: float) -> None:
    assert convert(value, unit, to) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("value", "unit", "to", "expected"),
    [
        (0.5, "ratio", "%", 50.0),
        (50.0, "percent", "ratio", 0.5),
        (1500.0, "ppb", "ppm", 1.5),
        (2.5, "klx", "lx", 2500.0),
        (300.0, "lux", "klx", 0.3),
        (1.2, "kW", "W", 1200.0),
        (1.2, "kw", "w", 1200.0),
        (250.0, "mW", "W", 0.25),
        (1013.25, "hPa", "Pa", 101325.0),
        (1.0, "bar", "kPa", 100.0),
        (1.0, "bar", "hPa", 1000.0),
        (100_000.0, "Pa", "bar", 1.0),
        (3300.0, "mV", "V", 3.3),
        (20.0, "mA", "A", 0.02),
        (1.5, "kWh", "Wh", 1500.0),
        (36.0, "km/h", "m/s", 10.0),
        (10.0, "m/s", "km/h", 36.0),
    ],
)
def test_other_families(value: float, unit: str, to: str, expected: float) -> None:
    assert convert(value, unit, to) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("unit", "to"),
    [
        ("%", "C"),
        ("C", "%"),
        ("ppm", "C"),
        ("W", "Wh"),
        ("kWh", "kW"),
        ("V", "A"),
        ("lux", "W"),
        ("km/h", "K"),
        ("°F", "ratio"),
    ],
)
def test_incompatible_family(unit: str, to: str) -> None:
    with pytest.raises(RejectedReading) as info:
        convert(1.0, unit, to)
    assert str(info.value) == f"unit {unit!r} cannot be converted to {to!r}"


@pytest.mark.parametrize("unit", ["X", "c", "f", "deg", "°", "Celsius", "KELVIN", " C", ""])
def test_unknown_unit(unit: str) -> None:
    assert not known_unit(unit)
    with pytest.raises(RejectedReading) as info:
        convert(20.0, unit, "C")
    assert str(info.value) == f"unknown unit {unit!r}"


def test_unknown_target_unit() -> None:
    with pytest.raises(RejectedReading, match="unknown unit 'X'"):
        convert(20.0, "C", "X")


FAMILIES = [
    ("C", "F", "K", "°F", "kelvin"),
    ("%", "ratio"),
    ("ppm", "ppb"),
    ("lx", "klx"),
    ("W", "kW", "mW"),
    ("Pa", "hPa", "kPa", "bar"),
    ("V", "mV"),
    ("A", "mA"),
    ("Wh", "kWh"),
    ("m/s", "km/h"),
]
same_family_pair = st.sampled_from(FAMILIES).flatmap(
    lambda units: st.tuples(st.sampled_from(units), st.sampled_from(units))
)


@settings(max_examples=150, deadline=None)
@given(x=st.floats(-1e6, 1e6), pair=same_family_pair)
def test_round_trip(x: float, pair: tuple[str, str]) -> None:
    unit, to = pair
    assert convert(convert(x, unit, to), to, unit) == pytest.approx(x, rel=1e-9, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6))
def test_conversion_is_affine_and_increasing(a: float, b: float) -> None:
    for unit, to in [("F", "C"), ("K", "F"), ("km/h", "m/s"), ("ppb", "ppm")]:
        ca, cb = convert(a, unit, to), convert(b, unit, to)
        if a < b:
            assert ca <= cb
        mid = convert((a + b) / 2, unit, to)
        assert mid == pytest.approx((ca + cb) / 2, rel=1e-9, abs=1e-6)
