"""Room physics: the HVAC moves a room towards its setpoint, the weather holds its curve, a room
left alone drifts towards outside, and the same inputs always give the same states."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.physics import (
    Controls,
    Occupancy,
    Room,
    RoomParams,
    Weather,
    World,
    saturation_density,
)

CONSTANT_10C = Weather(min_c=10, max_c=10, peak_lux=0)
QUIET = RoomParams(sun_gain_w=0, internal_gain_w=0)  # no gains: only the walls and the HVAC


def room(params: RoomParams = QUIET, weather: Weather = CONSTANT_10C, **kw: float) -> Room:
    return Room.create("r", params, weather, hour=kw.pop("hour", 0.0), **kw)


def run(r: Room, seconds: float, dt: float = 60.0) -> list[float]:
    temps, hour = [], r.hour
    for _ in range(int(seconds / dt)):
        r.step(dt, hour)
        hour = r.hour
        temps.append(r.temperature)
    return temps


def test_heat_warms_the_room_up_to_its_setpoint_and_no_further() -> None:
    r = room(temperature=15.0)
    r.controls = Controls(hvac_mode="heat", setpoint=22.0)
    temps = run(r, 6 * 3600)
    assert temps[0] > 15.0
    assert all(b >= a for a, b in itertools.pairwise(temps))  # warms all the way
    assert 21.0 < temps[-1] <= 22.0  # gets there (less the loss the throttle lets through)
    assert max(temps) <= 22.0


def test_cool_cools_the_room_down_to_its_setpoint_and_no_further() -> None:
    hot = Weather(min_c=32, max_c=32, peak_lux=0)
    r = room(weather=hot, temperature=30.0)
    r.controls = Controls(hvac_mode="cool", setpoint=22.0)
    temps = run(r, 6 * 3600)
    assert all(b <= a for a, b in itertools.pairwise(temps))
    assert 22.0 <= temps[-1] < 23.0
    assert min(temps) >= 22.0


def test_the_hvac_stops_pushing_once_at_its_setpoint() -> None:
    r = room(temperature=22.0)
    r.controls = Controls(hvac_mode="heat", setpoint=22.0)
    assert r.hvac_output_w == 0.0
    r.controls = Controls(hvac_mode="cool", setpoint=22.0)
    assert r.hvac_output_w == 0.0
    r.controls = Controls(hvac_mode="heat", setpoint=30.0)
    assert r.hvac_output_w == QUIET.hvac_power_w  # far below: full power
    r.controls = Controls(hvac_mode="off", setpoint=30.0)
    assert r.hvac_output_w == 0.0


def test_without_hvac_a_room_drifts_towards_outside_and_not_past_it() -> None:
    warm = room(temperature=25.0)
    temps = run(warm, 24 * 3600)
    assert all(10.0 < b < a for a, b in itertools.pairwise(temps))
    assert temps[-1] < 15.0
    cold = room(temperature=0.0)
    temps = run(cold, 24 * 3600)
    assert all(a < b < 10.0 for a, b in itertools.pairwise(temps))


def test_gains_settle_a_room_above_outside_by_gain_over_ua() -> None:
    params = RoomParams(sun_gain_w=0, internal_gain_w=600, ua_w_per_k=60)
    r = room(params, temperature=10.0)
    run(r, 10 * 86400, dt=600)
    assert r.temperature == pytest.approx(10.0 + 600 / 60, abs=0.01)


def test_the_outside_curve_holds_its_min_and_max_at_the_right_hours() -> None:
    w = Weather(min_c=-3, max_c=11, coldest_hour=4)
    assert w.temperature(4) == pytest.approx(-3)
    assert w.temperature(16) == pytest.approx(11)
    assert w.temperature(10) == pytest.approx(4)  # halfway up, halfway through the morning
    assert w.temperature(4 + 24) == pytest.approx(-3)  # the same every day


@given(
    lo=st.floats(-40, 40),
    spread=st.floats(0, 30),
    coldest=st.floats(0, 23.9),
    hour=st.floats(0, 48),
)
def test_the_outside_never_leaves_its_range(
    lo: float, spread: float, coldest: float, hour: float
) -> None:
    w = Weather(min_c=lo, max_c=lo + spread, coldest_hour=coldest)
    assert lo - 1e-9 <= w.temperature(hour) <= lo + spread + 1e-9


def test_daylight_rises_peaks_at_midday_and_is_dark_at_night() -> None:
    w = Weather(sunrise=6, sunset=18, peak_lux=50000)
    assert w.lux(3) == w.lux(6) == w.lux(20) == 0.0
    assert w.lux(12) == pytest.approx(50000)
    assert 0 < w.lux(8) < w.lux(10) < w.lux(12)
    r = room(RoomParams(daylight_factor=0.02, lamp_lux=300), w, hour=12)
    assert r.lux == pytest.approx(1000)
    r.controls.light = 50
    assert r.lux == pytest.approx(1150)


def test_people_add_co2_and_the_fan_takes_it_out() -> None:
    crowded = RoomParams(sun_gain_w=0, occupancy=(Occupancy(0, 24, people=3),))
    still, fanned = room(crowded, co2=420), room(crowded, co2=420)
    fanned.controls.fan = 100
    run(still, 3600)
    run(fanned, 3600)
    assert still.co2 > fanned.co2 > 420
    empty = room(co2=2000)
    empty.controls.fan = 100
    run(empty, 3 * 3600)
    assert empty.co2 < 500  # aired out towards the 420 ppm outside


def test_people_add_moisture_and_cooling_takes_it_out() -> None:
    crowded = RoomParams(sun_gain_w=0, occupancy=(Occupancy(0, 24, people=4),))
    hot = Weather(min_c=30, max_c=30, peak_lux=0, humidity=40)
    humid, dried = room(crowded, hot, temperature=30), room(crowded, hot, temperature=30)
    dried.controls = Controls(hvac_mode="cool", setpoint=16)  # running flat out all hour
    start = humid.water_g_m3
    run(humid, 3600)
    run(dried, 3600)
    assert humid.water_g_m3 > start > dried.water_g_m3
    assert 0 < humid.humidity <= 100
    assert dried.water_g_m3 <= saturation_density(dried.temperature)


def test_occupancy_wraps_midnight_and_shows_as_motion() -> None:
    night = RoomParams(occupancy=(Occupancy(22, 7, people=2),))
    r = room(night, hour=23)
    assert (r.people, r.motion) == (2, 1.0)
    r.hour = 12
    assert (r.people, r.motion) == (0, 0.0)
    r.hour = 6.5
    assert r.people == 2


def test_a_garden_follows_the_weather_and_the_valve_waters_it() -> None:
    w = Weather(min_c=5, max_c=25, coldest_hour=5)
    garden = RoomParams(outdoor=True)
    dry, watered = room(garden, w, humidity=30, hour=12), room(garden, w, humidity=30, hour=12)
    watered.controls.valve = 100
    run(dry, 3600)
    run(watered, 3600)
    assert dry.humidity < 30 < watered.humidity
    assert dry.temperature == pytest.approx(w.temperature(dry.hour))


def test_a_world_repeats_exactly() -> None:
    def world() -> World:
        w = Weather()
        params = RoomParams(occupancy=(Occupancy(7, 9, 2), Occupancy(18, 23, 3)))
        rooms = {"a": Room.create("a", params, w, hour=6), "b": Room.create("b", QUIET, w, hour=6)}
        return World(w, rooms, start_hour=6)

    one, two = world(), world()
    one.rooms["a"].controls.hvac_mode = two.rooms["a"].controls.hvac_mode = "cool"
    for _ in range(2000):
        one.step(37.0)
        two.step(37.0)
    for name in one.rooms:
        a, b = one.rooms[name], two.rooms[name]
        assert (a.temperature, a.water_g_m3, a.co2) == (b.temperature, b.water_g_m3, b.co2)
    assert one.t == pytest.approx(2000 * 37.0)
    assert one.hour == pytest.approx((6 + 2000 * 37.0 / 3600) % 24)


def test_a_long_step_is_as_stable_as_short_ones() -> None:
    coarse, fine = room(temperature=25.0), room(temperature=25.0)
    coarse.controls.fan = fine.controls.fan = 100
    coarse.step(3600, 0.0)
    run(fine, 3600, dt=10)
    assert coarse.temperature == pytest.approx(fine.temperature, abs=0.05)
    assert math.isfinite(coarse.co2)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Weather(min_c=20, max_c=10), "min_c 20 must not exceed max_c 10"),
        (lambda: Weather(sunrise=20, sunset=6), "sunrise < sunset"),
        (lambda: RoomParams(volume_m3=0), "volume_m3 must be > 0"),
        (lambda: RoomParams(ua_w_per_k=-1), "ua_w_per_k must be >= 0"),
        (lambda: Occupancy(25, 3), "hours in [0, 24]"),
        (lambda: Controls(hvac_mode="dry"), "hvac_mode must be one of"),
    ],
)
def test_parameters_check_themselves(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make()
