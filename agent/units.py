"""Unit conversion to a quantity's canonical unit: affine maps within a family of units."""

from __future__ import annotations

from agent.errors import RejectedReading

# unit -> (family, scale, offset): value_in_base = value * scale + offset
_UNITS: dict[str, tuple[str, float, float]] = {
    "C": ("temperature", 1.0, 0.0),
    "F": ("temperature", 5.0 / 9.0, -32.0 * 5.0 / 9.0),
    "K": ("temperature", 1.0, -273.15),
    "%": ("ratio", 1.0, 0.0),
    "ratio": ("ratio", 100.0, 0.0),
    "ppm": ("concentration", 1.0, 0.0),
    "ppb": ("concentration", 0.001, 0.0),
    "lx": ("illuminance", 1.0, 0.0),
    "klx": ("illuminance", 1000.0, 0.0),
    "W": ("power", 1.0, 0.0),
    "kW": ("power", 1000.0, 0.0),
    "mW": ("power", 0.001, 0.0),
    "Pa": ("pressure", 1.0, 0.0),
    "hPa": ("pressure", 100.0, 0.0),
    "kPa": ("pressure", 1000.0, 0.0),
    "bar": ("pressure", 100_000.0, 0.0),
    "V": ("voltage", 1.0, 0.0),
    "mV": ("voltage", 0.001, 0.0),
    "A": ("current", 1.0, 0.0),
    "mA": ("current", 0.001, 0.0),
    "Wh": ("energy", 1.0, 0.0),
    "kWh": ("energy", 1000.0, 0.0),
    "m/s": ("speed", 1.0, 0.0),
    "km/h": ("speed", 1.0 / 3.6, 0.0),
}
_ALIASES = {
    "°C": "C",
    "degC": "C",
    "celsius": "C",
    "°F": "F",
    "degF": "F",
    "fahrenheit": "F",
    "kelvin": "K",
    "percent": "%",
    "lux": "lx",
    "w": "W",
    "kw": "kW",
}


def canonical_name(unit: str) -> str:
    return _ALIASES.get(unit, unit)


def known_unit(unit: str) -> bool:
    return canonical_name(unit) in _UNITS


def convert(value: float, unit: str, to: str) -> float:
    """Convert ``value`` from ``unit`` to ``to``; raise :class:`RejectedReading` if impossible."""
    src, dst = canonical_name(unit), canonical_name(to)
    if src == dst:
        return value
    if src not in _UNITS:
        raise RejectedReading(f"unknown unit {unit!r}", "unit")
    if dst not in _UNITS:
        raise RejectedReading(f"unknown unit {to!r}", "unit")
    family, scale, offset = _UNITS[src]
    dst_family, dst_scale, dst_offset = _UNITS[dst]
    if family != dst_family:
        raise RejectedReading(f"unit {unit!r} cannot be converted to {to!r}", "unit")
    return (value * scale + offset - dst_offset) / dst_scale
