"""Actuator health, exactly: no acknowledgement within the TTL, a state contradicting its own
command, an HVAC with no effect on its room, and a person switching back after commands."""

from __future__ import annotations

from agent.diagnosis.actuators import ActuatorMonitor, Timing
from agent.diagnosis.verdict import FAULTY, SUSPECT

TIMING = Timing(effect_after=1200, fight_window=600, fight_memory=7200)


def monitor() -> ActuatorMonitor:
    return ActuatorMonitor("room-hvac", "hvac", TIMING)


def found(m: ActuatorMonitor, now: float) -> dict[str, str]:
    return {f.fault: f.state for f in m.findings(now)}


def test_no_state_within_the_ttl() -> None:
    m = monitor()
    m.on_command(100.0, "a", "heat", 22.0, 30.0)
    assert found(m, 131.0) == {}  # TTL 30 s plus 2 s of grace
    assert found(m, 133.0) == {"no_ack": SUSPECT}
    m.on_command(200.0, "b", "heat", 22.0, 30.0)
    assert found(m, 233.0) == {"no_ack": FAULTY}
    m.on_command(300.0, "c", "off", None, 30.0)
    m.on_state(301.0, "off", None, "c")
    assert found(m, 400.0) == {}


def test_a_state_that_contradicts_its_own_command() -> None:
    m = ActuatorMonitor("garden-valve", "valve", TIMING)
    m.on_command(100.0, "a", "close", None, 30.0)
    m.on_state(101.0, "open", None, "a")
    findings = m.findings(102.0)
    assert [(f.fault, f.state) for f in findings] == [("contradicts", FAULTY)]
    assert findings[0].explanation == ("garden-valve valve was told to close and reports open "
                                       "for that very command.")
    m.on_command(200.0, "b", "open", None, 30.0)
    m.on_state(201.0, "open", None, "b")
    assert found(m, 202.0) == {}


def test_cooling_that_does_not_cool() -> None:
    m = monitor()
    for i in range(21):  # the room warmed 0.4 K in the 20 minutes before
        m.on_room(i * 60.0, 25.0 + 0.4 * i / 20)
    m.on_command(1200.0, "a", "cool", 21.0, 30.0)
    m.on_state(1201.0, "cool", 21.0, "a")
    for i in range(1, 21):  # and keeps warming while told to cool
        m.on_room(1200.0 + i * 60.0, 25.4 + 0.4 * i / 20)
    assert found(m, 2399.0) == {}  # not yet 20 minutes
    findings = m.findings(2400.0)
    assert [(f.fault, f.state) for f in findings] == [("no_effect", FAULTY)]
    assert round(findings[0].evidence["change_k"], 9) == 0.4
    assert findings[0].explanation == ("room-hvac hvac has been set to cool for 20 min, yet the "
                                       "room went 0.4 K (it went 0.4 K before): it seems to have "
                                       "no effect.")


def test_heating_that_only_slows_the_cooling_is_an_effect() -> None:
    m = monitor()
    for i in range(21):  # a cold night: the room lost 0.3 K in the 20 minutes before
        m.on_room(i * 60.0, 20.0 - 0.3 * i / 20)
    m.on_command(1200.0, "a", "heat", 23.0, 30.0)
    m.on_state(1201.0, "heat", 23.0, "a")
    for i in range(1, 21):  # a small heater: the room now loses only 0.1 K
        m.on_room(1200.0 + i * 60.0, 19.7 - 0.1 * i / 20)
    assert found(m, 2400.0) == {}


def test_cooling_that_cools_is_fine_and_a_room_at_its_setpoint_proves_nothing() -> None:
    m = monitor()
    m.on_command(0.0, "a", "cool", 21.0, 30.0)
    m.on_state(1.0, "cool", 21.0, "a")
    for i in range(41):
        m.on_room(i * 60.0, 25.0 - 1.5 * i / 40)
    assert found(m, 2400.0) == {}
    n = monitor()
    n.on_command(0.0, "a", "cool", 21.0, 30.0)
    n.on_state(1.0, "cool", 21.0, "a")
    for i in range(41):
        n.on_room(i * 60.0, 21.5)  # within a kelvin of the setpoint: nothing to expect
    assert found(n, 2400.0) == {}


def test_a_person_switching_back_after_each_command() -> None:
    m = ActuatorMonitor("room-light", "light", TIMING)
    for k in range(3):
        t = k * 1000.0
        m.on_command(t, f"c{k}", "on", 60.0, 30.0)
        m.on_state(t + 1, "on", 60.0, f"c{k}")
        m.on_state(t + 120, "off", 0.0, None)  # by hand, two minutes later
        expected = {} if k == 0 else {"fighting": SUSPECT if k == 1 else FAULTY}
        assert found(m, t + 121) == expected
    assert found(m, 2120.0 + 7201) == {}  # forgotten after fight_memory


def test_a_noisy_thermometer_proves_nothing_about_the_hvac() -> None:
    m = monitor()
    jitter = [0.9, -1.1, 0.4, -0.2, 1.3, -0.8, 0.1, -1.4, 0.7, 0.2, -0.6, 1.0, -0.3, 0.5, -1.2,
              0.8, -0.1, 0.3, -0.9, 1.1, -0.5]
    for i in range(21):
        m.on_room(i * 60.0, 25.0 + jitter[i])
    m.on_command(1200.0, "a", "cool", 21.0, 30.0)
    m.on_state(1201.0, "cool", 21.0, "a")
    for i in range(1, 21):
        m.on_room(1200.0 + i * 60.0, 25.0 + jitter[20 - i])
    assert found(m, 2400.0) == {}
