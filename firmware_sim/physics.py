"""Room physics: a lumped thermal model per room, with humidity, CO2 and daylight.

Everything here is pure and deterministic: the only clock is the simulation time that
:meth:`World.step` advances, and nothing draws random numbers. Units are SI-ish: degrees
Celsius, watts, joules per kelvin, cubic metres, grams of water per cubic metre (relative
humidity in percent at the surface), ppm of CO2, lux; hours of the day are floats in [0, 24).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DAY_S = 86400.0
MAX_SUBSTEP_S = 30.0  # explicit Euler stays stable: the fastest time constant is ~450 s
CO2_PER_PERSON_M3_S = 5.0e-6  # an adult at rest breathes out about 0.3 l of CO2 a minute
HEAT_PER_PERSON_W = 100.0
WATER_PER_PERSON_G_H = 50.0


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def saturation_density(temperature: float) -> float:
    """Water vapour density (g/m3) of saturated air at ``temperature`` C (Magnus formula)."""
    pressure_hpa = 6.112 * math.exp(17.62 * temperature / (243.12 + temperature))
    return 216.7 * pressure_hpa / (273.15 + temperature)


def relative_humidity(absolute: float, temperature: float) -> float:
    return min(100.0, 100.0 * absolute / saturation_density(temperature))


def absolute_humidity(relative: float, temperature: float) -> float:
    return relative / 100.0 * saturation_density(temperature)


def _clip(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


@dataclass(frozen=True, slots=True)
class Weather:
    """The outside over a day: a cosine between ``min_c`` at ``coldest_hour`` and ``max_c``
    twelve hours later, daylight as a half sine between sunrise and sunset."""

    min_c: float = 10.0
    max_c: float = 22.0
    coldest_hour: float = 5.0
    humidity: float = 70.0  # relative, percent, held through the day
    sunrise: float = 6.5
    sunset: float = 19.5
    peak_lux: float = 60000.0
    co2: float = 420.0

    def __post_init__(self) -> None:
        _check(self.min_c <= self.max_c, f"min_c {self.min_c} must not exceed max_c {self.max_c}")
        _check(
            0 <= self.coldest_hour < 24, f"coldest_hour must be in [0, 24), got {self.coldest_hour}"
        )
        _check(0 <= self.humidity <= 100, f"humidity must be in [0, 100], got {self.humidity}")
        _check(
            0 <= self.sunrise < self.sunset <= 24,
            f"need 0 <= sunrise < sunset <= 24, got {self.sunrise} and {self.sunset}",
        )
        _check(self.peak_lux >= 0, f"peak_lux must be >= 0, got {self.peak_lux}")
        _check(self.co2 >= 0, f"co2 must be >= 0, got {self.co2}")

    def temperature(self, hour: float) -> float:
        mid, amp = (self.max_c + self.min_c) / 2, (self.max_c - self.min_c) / 2
        return mid - amp * math.cos(2 * math.pi * (hour - self.coldest_hour) / 24)

    def lux(self, hour: float) -> float:
        hour %= 24
        if not self.sunrise < hour < self.sunset:
            return 0.0
        return self.peak_lux * math.sin(
            math.pi * (hour - self.sunrise) / (self.sunset - self.sunrise)
        )

    def daylight(self, hour: float) -> float:
        """The sun's strength from 0 (night) to 1 (noon)."""
        return self.lux(hour) / self.peak_lux if self.peak_lux > 0 else 0.0

    def absolute_humidity(self, hour: float) -> float:
        return absolute_humidity(self.humidity, self.temperature(hour))


@dataclass(frozen=True, slots=True)
class Occupancy:
    """``people`` in the room from ``start`` to ``end`` (hours of the day; may wrap midnight)."""

    start: float
    end: float
    people: int = 1

    def __post_init__(self) -> None:
        _check(
            0 <= self.start < 24 and 0 <= self.end <= 24, "start and end must be hours in [0, 24]"
        )
        _check(self.people >= 0, f"people must be >= 0, got {self.people}")

    def covers(self, hour: float) -> bool:
        hour %= 24
        if self.start <= self.end:
            return self.start <= hour < self.end
        return hour >= self.start or hour < self.end


@dataclass(frozen=True, slots=True)
class RoomParams:
    """What a room is made of. ``outdoor`` rooms (a garden) follow the weather; their
    "humidity" is the soil moisture in percent, which the sun dries and a valve waters."""

    outdoor: bool = False
    volume_m3: float = 50.0
    heat_capacity_j_per_k: float = 2.0e6  # air, walls and furniture that follow the air
    ua_w_per_k: float = 60.0  # heat loss to the outside per kelvin of difference
    ventilation_ach: float = 0.5  # air changes per hour with the fan off
    sun_gain_w: float = 400.0  # through the windows at noon
    internal_gain_w: float = 80.0  # appliances
    daylight_factor: float = 0.02  # indoor lux per outdoor lux
    hvac_power_w: float = 2500.0  # thermal, heating or cooling
    hvac_band_k: float = 0.5  # the HVAC throttles down over the last band_k before its setpoint
    hvac_cop: float = 3.0
    dehumidify_g_per_h: float = 400.0  # water the cooling coil removes at full power
    fan_ach: float = 8.0  # extra air changes per hour with the fan at 100 %
    fan_power_w: float = 60.0
    lamp_lux: float = 400.0  # at 100 % brightness
    lamp_power_w: float = 40.0
    base_power_w: float = 50.0
    irrigation_pct_per_h: float = 40.0  # outdoor: soil moisture the open valve adds
    evaporation_pct_per_h: float = 2.0  # outdoor: soil moisture the noon sun takes
    occupancy: tuple[Occupancy, ...] = ()

    def __post_init__(self) -> None:
        for name in ("volume_m3", "heat_capacity_j_per_k", "hvac_band_k", "hvac_cop"):
            value = getattr(self, name)
            _check(value > 0, f"{name} must be > 0, got {value}")
        for name in (
            "ua_w_per_k",
            "ventilation_ach",
            "sun_gain_w",
            "internal_gain_w",
            "daylight_factor",
            "hvac_power_w",
            "dehumidify_g_per_h",
            "fan_ach",
            "fan_power_w",
            "lamp_lux",
            "lamp_power_w",
            "base_power_w",
            "irrigation_pct_per_h",
            "evaporation_pct_per_h",
        ):
            value = getattr(self, name)
            _check(value >= 0, f"{name} must be >= 0, got {value}")

    def people(self, hour: float) -> int:
        return sum(o.people for o in self.occupancy if o.covers(hour))


HVAC_MODES = ("off", "heat", "cool")


@dataclass(slots=True)
class Controls:
    """What the actuators set: the HVAC mode and setpoint, light, fan and valve levels (%)."""

    hvac_mode: str = "off"
    setpoint: float = 21.0
    light: float = 0.0
    fan: float = 0.0
    valve: float = 0.0
    locked: bool = True

    def __post_init__(self) -> None:
        _check(self.hvac_mode in HVAC_MODES, f"hvac_mode must be one of {HVAC_MODES}")


@dataclass
class Room:
    """One room's state; :meth:`step` integrates it over ``dt`` seconds at ``hour``."""

    name: str
    params: RoomParams
    weather: Weather
    temperature: float = 21.0
    water_g_m3: float = 8.0  # absolute humidity indoors; soil moisture (%) outdoors
    co2: float = 500.0
    hour: float = 0.0
    controls: Controls = field(default_factory=Controls)

    @classmethod
    def create(
        cls,
        name: str,
        params: RoomParams,
        weather: Weather,
        *,
        hour: float,
        temperature: float = 21.0,
        humidity: float = 45.0,
        co2: float = 500.0,
    ) -> Room:
        """A room at ``hour`` with ``humidity`` in percent (relative; soil moisture outdoors)."""
        if params.outdoor:
            temperature, co2 = weather.temperature(hour), weather.co2
            water = humidity
        else:
            water = absolute_humidity(humidity, temperature)
        return cls(name, params, weather, temperature, water, co2, hour % 24)

    # -- what the sensors see ---------------------------------------------------------------

    @property
    def humidity(self) -> float:
        """Relative humidity in percent (soil moisture outdoors)."""
        if self.params.outdoor:
            return self.water_g_m3
        return relative_humidity(self.water_g_m3, self.temperature)

    @property
    def lux(self) -> float:
        outside = self.weather.lux(self.hour)
        lamp = self.params.lamp_lux * self.controls.light / 100
        return (
            outside + lamp if self.params.outdoor else outside * self.params.daylight_factor + lamp
        )

    @property
    def people(self) -> int:
        return self.params.people(self.hour)

    @property
    def motion(self) -> float:
        return 1.0 if self.people > 0 else 0.0

    @property
    def hvac_output_w(self) -> float:
        """Heat the HVAC puts into the room now (negative when cooling)."""
        c, p = self.controls, self.params
        if self.params.outdoor or c.hvac_mode == "off":
            return 0.0
        if c.hvac_mode == "heat":
            return p.hvac_power_w * _clip((c.setpoint - self.temperature) / p.hvac_band_k, 0, 1)
        return -p.hvac_power_w * _clip((self.temperature - c.setpoint) / p.hvac_band_k, 0, 1)

    @property
    def power_w(self) -> float:
        """Electrical power the room draws."""
        p, c = self.params, self.controls
        return (
            p.base_power_w
            + abs(self.hvac_output_w) / p.hvac_cop
            + p.lamp_power_w * c.light / 100
            + p.fan_power_w * c.fan / 100
        )

    # -- time -------------------------------------------------------------------------------

    def step(self, dt: float, hour: float) -> None:
        """Integrate over ``dt`` seconds that start at ``hour``; sub-steps keep it stable."""
        steps = max(1, math.ceil(dt / MAX_SUBSTEP_S))
        h = dt / steps
        for i in range(steps):
            self.hour = (hour + i * h / 3600) % 24
            if self.params.outdoor:
                self._step_outdoor(h)
            else:
                self._step_indoor(h)
        self.hour = (hour + dt / 3600) % 24

    def _step_indoor(self, dt: float) -> None:
        p, w, hour = self.params, self.weather, self.hour
        outside = w.temperature(hour)
        cooling = max(0.0, -self.hvac_output_w) / p.hvac_power_w if p.hvac_power_w else 0.0
        heat = (
            p.ua_w_per_k * (outside - self.temperature)
            + self.hvac_output_w
            + self.people * HEAT_PER_PERSON_W
            + p.sun_gain_w * w.daylight(hour)
            + p.internal_gain_w
        )
        exchange = (p.ventilation_ach + p.fan_ach * self.controls.fan / 100) / 3600  # per second
        water = (
            self.people * WATER_PER_PERSON_G_H / 3600 / p.volume_m3
            - cooling * p.dehumidify_g_per_h / 3600 / p.volume_m3
            + exchange * (w.absolute_humidity(hour) - self.water_g_m3)
        )
        co2 = self.people * CO2_PER_PERSON_M3_S * 1e6 / p.volume_m3 + exchange * (w.co2 - self.co2)
        self.temperature += heat / p.heat_capacity_j_per_k * dt
        saturated = saturation_density(self.temperature)
        self.water_g_m3 = _clip(self.water_g_m3 + water * dt, 0.0, saturated)
        self.co2 = max(0.0, self.co2 + co2 * dt)

    def _step_outdoor(self, dt: float) -> None:
        p, w = self.params, self.weather
        watering = p.irrigation_pct_per_h * self.controls.valve / 100
        drying = p.evaporation_pct_per_h * (0.2 + w.daylight(self.hour))
        self.water_g_m3 = _clip(self.water_g_m3 + (watering - drying) * dt / 3600, 0.0, 100.0)
        self.temperature = w.temperature(self.hour + dt / 3600)  # the air at the step's end
        self.co2 = w.co2


class World:
    """The weather and the rooms, advanced together from ``start_hour`` on by :meth:`step`."""

    def __init__(self, weather: Weather, rooms: dict[str, Room], start_hour: float = 0.0) -> None:
        self.weather = weather
        self.rooms = rooms
        self.start_hour = start_hour % 24
        self.t = 0.0  # simulated seconds since the start

    @property
    def hour(self) -> float:
        return (self.start_hour + self.t / 3600) % 24

    @property
    def outside_temperature(self) -> float:
        return self.weather.temperature(self.hour)

    def step(self, dt: float) -> None:
        if dt < 0 or not math.isfinite(dt):
            raise ValueError(f"dt must be a finite number >= 0, got {dt}")
        hour = self.hour
        for room in self.rooms.values():
            room.step(dt, hour)
        self.t += dt
