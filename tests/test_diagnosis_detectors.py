"""The statistical fault detectors, exactly: each fires on its fault with numbers and a
sentence, and stays quiet on a healthy series of the same kind."""

from __future__ import annotations

import random

from agent.diagnosis import detectors as d
from agent.diagnosis.series import SeriesMonitor
from agent.diagnosis.verdict import FAULTY, OK, SUSPECT, Finding, Tracker


def healthy(n: int, seed: int = 1, noise: float = 0.1, base: float = 21.0) -> list[float]:
    rng = random.Random(seed)
    return [round(base + 0.5 * (i % 120) / 120 + rng.gauss(0, noise), 3) for i in range(n)]


def feed(values: list[float], every: float = 60.0, start: float = 1000.0,
         quantity: str = "temperature") -> SeriesMonitor:
    m = SeriesMonitor("room-1", quantity)
    for i, v in enumerate(values):
        m.observe(start + i * every, v)
    return m


def faults(m: SeriesMonitor, now: float, moved: int | None = 50) -> dict[str, Finding]:
    return {f.fault: f for f in m.findings(now, moved)}


def test_silent_after_eight_usual_intervals() -> None:
    m = feed(healthy(100))
    last = 1000.0 + 99 * 60
    assert "silent" not in faults(m, last + 3 * 60)
    assert faults(m, last + 5 * 60)["silent"].state == SUSPECT
    found = faults(m, last + 8 * 60)["silent"]
    assert found.state == FAULTY
    assert found.evidence["usual_interval_s"] == 60.0 and found.evidence["silent_s"] == 480.0
    assert found.started == last
    assert found.explanation == ("room-1 temperature has sent nothing for 8 min; it usually "
                                 "reports every 60 s.")


def test_a_message_without_a_number_is_no_silence() -> None:
    m = feed(healthy(100))
    m.seen(1000.0 + 107 * 60)
    assert "silent" not in faults(m, 1000.0 + 108 * 60)


def test_stuck_needs_a_run_the_series_never_shows() -> None:
    values = healthy(200) + [21.234] * 10
    m = feed(values)
    found = faults(m, 1000.0 + 210 * 60)["stuck"]
    assert found.state == FAULTY and found.evidence["same_readings"] == 10
    assert found.explanation.startswith("room-1 temperature looks stuck at 21.2: the same reading "
                                        "10 times in a row (9 min) while its other readings "
                                        "changed 50 times")
    assert "stuck" not in faults(feed(healthy(200) + [21.234] * 7), 1000.0 + 207 * 60)


def test_a_quantised_sensor_repeating_itself_is_not_stuck() -> None:
    rng = random.Random(3)
    values = [round(21 + rng.choice((0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5)), 1) for _ in range(300)]
    values += [21.0] * 20
    found = faults(feed(values), 1000.0 + 320 * 60).get("stuck")
    assert found is None or found.state != FAULTY


def test_a_quiet_device_makes_stuck_only_a_suspicion() -> None:
    m = feed(healthy(200) + [21.234] * 12)
    assert faults(m, 1000.0 + 212 * 60, moved=0)["stuck"].state == SUSPECT


def test_a_level_the_series_rests_at_is_not_stuck() -> None:
    values = healthy(100) + [0.0] * 30 + healthy(50) + [50.0] * 5 + healthy(50) + [50.0] * 30
    found = faults(feed(values), 1000.0 + len(values) * 60)
    assert "stuck" not in found


def test_spikes_that_come_back_are_spiky_and_a_step_is_not() -> None:
    values = healthy(120)
    for i in (70, 85, 100, 110):
        values[i] += 8.0
    found = faults(feed(values), 1000.0 + 120 * 60)
    assert found["spiky"].state == FAULTY and found["spiky"].evidence["spikes"] == 4
    step = healthy(60) + [v + 8 for v in healthy(60, seed=2)]
    assert "spiky" not in faults(feed(step), 1000.0 + 120 * 60)


def test_noise_far_above_its_own_history_is_noisy() -> None:
    rng = random.Random(5)
    values = healthy(300, noise=0.05) + [21 + rng.gauss(0, 1.0) for _ in range(60)]
    found = faults(feed(values), 1000.0 + 360 * 60)
    assert found["noisy"].state == FAULTY and found["noisy"].evidence["ratio"] > 4
    assert "noisy" not in faults(feed(healthy(360, noise=0.05)), 1000.0 + 360 * 60)


def test_out_of_range_rate_over_the_last_readings() -> None:
    m = feed(healthy(100))
    for i in range(3):
        m.observe(1000.0 + (100 + i) * 60, -127.0, in_range=False)
    found = faults(m, 1000.0 + 103 * 60)["out_of_range"]
    assert found.state == FAULTY and found.evidence["out_of_range"] == 3
    assert found.explanation.endswith("outside the plausible range, the last -127.")


def test_a_jump_by_a_unit_conversion_is_a_wrong_unit() -> None:
    values = healthy(100) + [round(v * 1.8 + 32, 3) for v in healthy(10, seed=9)]
    found = faults(feed(values), 1000.0 + 110 * 60)
    assert set(found) & {"wrong_unit", "spiky", "noisy"} == {"wrong_unit"}
    assert "the same value in F" in found["wrong_unit"].explanation
    other = healthy(100) + [v + 30 for v in healthy(10, seed=9)]  # a jump, but by no unit
    assert "wrong_unit" not in faults(feed(other), 1000.0 + 110 * 60)


def test_some_readings_in_fahrenheit_are_a_wrong_unit_not_spikes() -> None:
    values = healthy(120)
    for i in (70, 85, 100, 110):
        values[i] = round(values[i] * 1.8 + 32, 3)
    found = faults(feed(values), 1000.0 + 120 * 60)
    assert "spiky" not in found and found["mixed_units"].state == FAULTY
    assert found["mixed_units"].explanation == ("room-1 temperature sends some readings in F "
                                               "without saying so: 4 of its last 60 were the "
                                               "same value in F.")


def test_drift_against_the_reference_walks_away() -> None:
    m = feed(healthy(100))
    for _ in range(60):
        m.observe_reference(0.1)
    for i in range(30):
        m.observe_reference(0.1 + 0.06 * i)
    early = faults(m, 1000.0 + 100 * 60)["drift"]  # median 0.97: 0.87 away, tolerance 1.5
    assert early.state == SUSPECT and round(early.evidence["offset"], 3) == 0.87
    for _ in range(30):
        m.observe_reference(2.0)
    found = faults(m, 1000.0 + 100 * 60)["drift"]
    assert found.state == FAULTY and round(found.evidence["offset"], 3) == 1.9


def test_the_tracker_declares_at_once_and_clears_after_three_clean_checks() -> None:
    t = Tracker("room-1 temperature", 0.0)
    bad = Finding("stuck", 1.0, {"same_readings": 9}, "stuck.")
    first = t.update(10.0, [bad])
    assert first is not None and first.state == FAULTY and first.since == 10.0
    assert t.update(20.0, [bad]) is None and t.health.since == 10.0
    assert t.update(30.0, []) is None and t.update(40.0, []) is None
    cleared = t.update(50.0, [])
    assert cleared is not None and cleared.state == OK and cleared.since == 50.0


def test_since_is_when_the_evidence_began() -> None:
    t = Tracker("x", 0.0)
    changed = t.update(900.0, [Finding("stuck", 1.0, {}, "stuck.", started=300.0)])
    assert changed is not None and changed.since == 300.0


def test_the_tracker_names_the_fault_that_explains_the_others() -> None:
    t = Tracker("x", 0.0)
    drift = Finding("drift", 1.2, {}, "drift.")
    stuck = Finding("stuck", 1.0, {}, "stuck.")
    changed = t.update(1.0, [drift, stuck])
    assert changed is not None and changed.fault == "stuck"


def test_usual_interval_ignores_dropouts() -> None:
    times = [60.0 * i for i in range(30) if i % 7 != 3]
    assert d.usual_interval(times) == 60
    assert d.usual_interval(times[:15]) is None  # too little history to know


def test_a_burst_of_readings_then_a_pause_is_no_silence() -> None:
    m = SeriesMonitor("room-1", "temperature")
    for i in range(25):
        m.observe(1000.0 + 0.001 * i, 27.5)
    assert "silent" not in faults(m, 1004.0)
