"""The safety layer: nothing outside the allow-list and its ranges ever passes; every rule refuses
with its own reason; interlocks and rate limits on an injected clock."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agent.config import Config, parse_config
from agent.errors import AgentError, ConfigError
from agent.policy.safety import KINDS, Proposal, SafetyLayer, Verdict

CONFIG = """
policies:
  - name: climate
    inputs: [livingroom-1/temperature]
    targets: {livingroom-1/temperature: [20, 24]}
    actuators:
      - device: livingroom-hvac
        actuator: hvac
        actions: [cool, heat, off]
        value: {min: 16, max: 28}
      - device: livingroom-window
        actuator: window
        actions: [open, close]
        respond: {above: open, inside: close}
    safety: {min_interval: 30s, max_per_hour: 4, min_dwell: 2m, command_ttl: 20s}
  - name: night
    inputs: [livingroom-1/temperature]
    actuators:
      - device: livingroom-hvac
        actuator: hvac
        actions: [heat, off]
        value: {min: 16, max: 20.5}
    safety: {min_interval: 10s, max_per_hour: 100, min_dwell: 1s}
  - name: water
    inputs: [kitchen-leak/water]
    actuators:
      - {device: kitchen-valve, actuator: valve, actions: [open, close]}
      - {device: kitchen-pump, actuator: pump, actions: ["on", "off"]}
      - {device: kitchen-light, actuator: dimmer, actions: ["on", "off"], value: {min: 0, max: 1}}
      - {device: kitchen-lamp, actuator: lamp, actions: ["on", "off", brightness],
         value: {min: 0, max: 100, actions: [brightness]}}
interlocks:
  - name: leak closes the valve
    when: "kitchen-leak/water > 0.5"
    then: "kitchen-valve/valve=close"
  - name: no heating with the window open
    never_together: ["livingroom-hvac/hvac=heat", "livingroom-window/window=open"]
"""


# -- the oracle: the allow-list written out by hand, independent of the code under test ---------


@dataclass(frozen=True)
class Allowed:
    actions: tuple[str, ...]
    range: tuple[float, float] | None
    with_value: tuple[str, ...]  # the actions the range belongs to: on/off never carry one
    needs_value: tuple[str, ...]  # of those, the ones that may not go without (quantities)
    min_interval: float
    max_per_hour: int
    min_dwell: float


ALLOWED = {
    ("climate", "livingroom-hvac", "hvac"): Allowed(
        ("cool", "heat", "off"), (16.0, 28.0), ("cool", "heat"), (), 30.0, 4, 120.0
    ),
    ("climate", "livingroom-window", "window"): Allowed(
        ("open", "close"), None, (), (), 30.0, 4, 120.0
    ),
    ("night", "livingroom-hvac", "hvac"): Allowed(
        ("heat", "off"), (16.0, 20.5), ("heat",), (), 10.0, 100, 1.0
    ),
    ("water", "kitchen-valve", "valve"): Allowed(
        ("open", "close"), None, (), (), 30.0, 30, 120.0),
    ("water", "kitchen-pump", "pump"): Allowed(("on", "off"), None, (), (), 30.0, 30, 120.0),
    ("water", "kitchen-light", "dimmer"): Allowed(  # a range with on/off: "on" takes a level
        ("on", "off"), (0.0, 1.0), ("on",), (), 30.0, 30, 120.0),
    ("water", "kitchen-lamp", "lamp"): Allowed(
        ("on", "off", "brightness"), (0.0, 100.0), ("brightness",), ("brightness",), 30.0, 30,
        120.0),
}


def oracle(p: Proposal) -> tuple[bool, float | None]:
    """(may this ever be allowed, the value it would be sent with)."""
    entry = ALLOWED.get((p.policy, p.device, p.actuator))
    if entry is None or p.action not in entry.actions:
        return False, None
    if entry.range is None or p.action not in entry.with_value:
        return p.value is None, None
    if p.value is None:
        return p.action not in entry.needs_value, None
    if type(p.value) not in (int, float):  # excludes bool, str, Decimal, lists...
        return False, None
    lo, hi = entry.range
    number = cast(float, p.value)
    if not lo <= number <= hi:  # False for NaN; inf and huge ints are outside
        return False, None
    return True, float(number)


# -- helpers ---------------------------------------------------------------------------------


def config(text: str = CONFIG) -> Config:
    return parse_config(text)


CFG = config()  # frozen: one parse serves every example


@pytest.fixture
def layer() -> SafetyLayer:
    return SafetyLayer(CFG)


def no_readings(device: str, quantity: str) -> float | None:
    return None


def readings(**values: float) -> Any:
    def reading(device: str, quantity: str) -> float | None:
        return values.get(f"{device}/{quantity}".replace("-", "_").replace("/", "__"))

    return reading


LEAK = readings(kitchen_leak__water=1.0)
DRY = readings(kitchen_leak__water=0.0)


def hvac(action: str, value: object = 22.0, policy: str = "climate", **kw: Any) -> Proposal:
    return Proposal(policy, "livingroom-hvac", "hvac", action, value, **kw)


def window(action: str, **kw: Any) -> Proposal:
    return Proposal("climate", "livingroom-window", "window", action, None, **kw)


def valve(action: str, value: object = None, source: str = "policy") -> Proposal:
    return Proposal("water", "kitchen-valve", "valve", action, value, source)


def send(layer: SafetyLayer, p: Proposal, now: float, reading: Any = no_readings) -> Verdict:
    """Check, and record the command as sent when allowed (what the agent does)."""
    verdict = layer.check(p, now, reading)
    if verdict.allowed:
        layer.record_sent(p.device, p.actuator, p.action, verdict.value, now)
    return verdict


def refused(verdict: Verdict, kind: str, *words: str) -> None:
    assert not verdict.allowed and verdict.kind == kind, verdict
    assert verdict.value is None
    for word in words:
        assert word in verdict.reason, verdict.reason


# -- strategies: model-like output -----------------------------------------------------------


REAL_WORDS = sorted(
    {w for key, entry in ALLOWED.items() for w in (*key, *entry.actions)} | {"intent", "rules"}
)


def near_misses(word: str) -> list[str]:
    return [
        word.upper(),
        word.title(),
        f"{word} ",
        f" {word}",
        f"{word}\n",
        word[:-1],
        f"{word}s",
        f"{word}\x00",
        word.replace("o", "0"),
        word.replace("a", "\u0430"),  # Cyrillic a
        word.replace("-", "_"),
        word.replace("-", ""),
        f"{word}/",
        f"{word}=on",
        "\u200b" + word,  # zero-width space
    ]


NEAR_WORDS = sorted({m for w in REAL_WORDS for m in near_misses(w)} - set(REAL_WORDS))
names = st.one_of(st.sampled_from(REAL_WORDS), st.sampled_from(NEAR_WORDS), st.text(max_size=12))
values = st.one_of(
    st.floats(),  # NaN and infinities included
    st.floats(min_value=14, max_value=30),
    st.integers(),
    st.integers(min_value=10, max_value=30),
    st.sampled_from([10**400, -(10**400), 2**1024, 16, 28, 20.5, 28.000001, -0.0, 1e308]),
    st.text(max_size=6),
    st.sampled_from(["22", "22.0", "nan", "inf", "off", ""]),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


def good_values(entry: Allowed, action: str) -> st.SearchStrategy[object]:
    """Values the actuator takes (and some it does not), for a real actuator and action."""
    if entry.range is None or action not in entry.with_value:
        return st.one_of(st.none(), st.just(1.0))
    lo, hi = entry.range
    return st.one_of(
        st.floats(lo, hi),
        st.integers(math.ceil(lo), math.floor(hi)),
        st.sampled_from([lo, hi, math.nextafter(lo, -math.inf), math.nextafter(hi, math.inf)]),
        st.none(),
    )


@st.composite
def proposals(draw: st.DrawFn, sources: tuple[str, ...] = ("policy", "intent")) -> Proposal:
    """Mostly near the allow-list: a real actuator and action with one field perhaps swapped
    for a near-miss or a random word, and a value that is often right and often not."""
    policy, device, actuator = draw(st.sampled_from(sorted(ALLOWED)))
    entry = ALLOWED[(policy, device, actuator)]
    action = draw(st.sampled_from(entry.actions))
    fields = [policy, device, actuator, action]
    if draw(st.booleans()):
        for i in draw(st.lists(st.integers(0, 3), min_size=1, max_size=3)):
            fields[i] = draw(names)
    value = draw(good_values(entry, action) if draw(st.booleans()) else values)
    source = draw(st.sampled_from(sources))
    return Proposal(fields[0], fields[1], fields[2], fields[3], value, source)


FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- properties ------------------------------------------------------------------------------


@FAST
@given(p=proposals())
def test_a_fresh_layer_allows_exactly_the_allow_list(p: Proposal) -> None:
    verdict = SafetyLayer(CFG).check(p, 1000.0, no_readings)
    ok, value = oracle(p)
    event(f"allowed={ok}")
    assert verdict.allowed == ok, (p, verdict)
    if ok:
        assert verdict.value == value and (value is None or type(verdict.value) is float)
        assert verdict.kind == "ok"
    else:
        assert verdict.kind in KINDS and verdict.value is None
        assert "\n" not in verdict.reason and 0 < len(verdict.reason) <= 300


@FAST
@given(p=proposals(sources=("interlock",)))
def test_no_interlock_proposal_passes_when_no_interlock_is_in_force(p: Proposal) -> None:
    verdict = SafetyLayer(CFG).check(p, 1000.0, DRY)
    assert not verdict.allowed


@dataclass
class RateOracle:
    """Rate limits recomputed from the sends alone."""

    times: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    last: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)  # action, since

    def check(self, p: Proposal, now: float) -> None:
        rules = ALLOWED[(p.policy, p.device, p.actuator)]
        times = self.times.get((p.device, p.actuator), [])
        if times:
            assert now - times[-1] >= rules.min_interval
        assert sum(1 for t in times if t > now - 3600) < rules.max_per_hour
        action, since = self.last.get((p.device, p.actuator), (p.action, -math.inf))
        assert action == p.action or now - since >= rules.min_dwell

    def sent(self, p: Proposal, now: float) -> None:
        key = (p.device, p.actuator)
        self.times.setdefault(key, []).append(now)
        if self.last.get(key, ("",))[0] != p.action:
            self.last[key] = (p.action, now)


@st.composite
def clean(draw: st.DrawFn) -> Proposal:
    """A proposal for the living room that the allow-list takes: it meets the other rules."""
    keys = [k for k in sorted(ALLOWED) if k[1].startswith("livingroom")]
    policy, device, actuator = draw(st.sampled_from(keys))
    entry = ALLOWED[(policy, device, actuator)]
    action = draw(st.sampled_from(entry.actions))
    value = draw(good_values(entry, action))
    return Proposal(policy, device, actuator, action, value)


steps = st.lists(
    st.tuples(
        st.one_of(clean(), proposals(sources=("policy", "intent", "interlock"))),
        st.one_of(st.floats(0, 40), st.floats(0, 600)),
        st.booleans(),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps, leak_at=st.sampled_from([0.0, 300.0, math.inf]))
def test_over_time_nothing_outside_the_rules_is_ever_sent(
    steps: list[tuple[Proposal, float, bool]], leak_at: float
) -> None:
    layer, rates, now = SafetyLayer(CFG), RateOracle(), 0.0
    for p, dt, reported in steps:
        now += dt
        reading = LEAK if now >= leak_at else DRY
        for forced in layer.forced(now, reading):
            assert oracle(forced) == (True, None) and forced.source == "interlock"
            if send(layer, forced, now, reading).allowed:
                rates.sent(forced, now)
        verdict = send(layer, p, now, reading)
        event(f"{verdict.kind}")
        if not verdict.allowed:
            continue
        assert oracle(p) == (True, verdict.value)
        if now >= leak_at and (p.device, p.actuator) == ("kitchen-valve", "valve"):
            assert p.action == "close"
        if p.source != "interlock":
            rates.check(p, now)
        rates.sent(p, now)
        if reported:
            layer.record_state(p.device, p.actuator, p.action, verdict.value)


# -- the allow-list --------------------------------------------------------------------------


def test_allowed_returns_the_checked_float(layer: SafetyLayer) -> None:
    verdict = layer.check(hvac("cool", 22), 0.0, no_readings)
    assert verdict == Verdict(True, "ok", 22.0)
    assert type(verdict.value) is float


def test_unknown_policy(layer: SafetyLayer) -> None:
    refused(layer.check(hvac("cool", policy="Climate"), 0.0, no_readings), "policy", "'Climate'")


def test_actuator_not_in_the_policy(layer: SafetyLayer) -> None:
    p = Proposal("water", "livingroom-hvac", "hvac", "cool", 22.0)
    refused(layer.check(p, 0.0, no_readings), "actuator", "livingroom-hvac/hvac", "'water'")
    p = Proposal("climate", "livingroom-hvac", "hvac ", "cool", 22.0)
    refused(layer.check(p, 0.0, no_readings), "actuator")


def test_action_not_allowed_for_the_actuator_in_that_policy(layer: SafetyLayer) -> None:
    refused(layer.check(hvac("dehumidify"), 0.0, no_readings), "action", "'dehumidify'")
    refused(layer.check(hvac("cool", 18.0, "night"), 0.0, no_readings), "action", "heat, off")
    assert layer.check(hvac("cool", 18.0), 0.0, no_readings).allowed  # climate lists cool


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), -float("inf"), 10**400, True, False, "22", [22], 15.99, 28.01],
)
def test_values_that_are_not_finite_numbers_in_range(layer: SafetyLayer, value: object) -> None:
    refused(layer.check(hvac("cool", value), 0.0, no_readings), "value", "livingroom-hvac/hvac")


@pytest.mark.parametrize("value", [True, False])
def test_a_boolean_is_not_a_number_even_where_0_and_1_are(layer: SafetyLayer, value: bool) -> None:
    p = Proposal("water", "kitchen-light", "dimmer", "on", value)
    refused(layer.check(p, 0.0, no_readings), "value", "finite number", repr(value))
    p = Proposal("water", "kitchen-light", "dimmer", "on", int(value))
    assert layer.check(p, 0.0, no_readings) == Verdict(True, "ok", float(value))


def test_a_range_belongs_to_the_actions_that_take_a_value(layer: SafetyLayer) -> None:
    """Issue 13: a dimmable light can be switched on and off without a number; brightness
    needs one; off never carries one; cool/heat may omit the setpoint."""
    lamp = ("water", "kitchen-lamp", "lamp")
    assert layer.check(Proposal(*lamp, "on", None), 0.0, no_readings).allowed
    assert layer.check(Proposal(*lamp, "off", None), 0.0, no_readings).allowed
    refused(layer.check(Proposal(*lamp, "off", 30), 0.0, no_readings), "value",
            "lamp=off takes no value")
    refused(layer.check(Proposal(*lamp, "brightness", None), 0.0, no_readings), "value",
            "needs a value in [0, 100]")
    assert layer.check(Proposal(*lamp, "brightness", 30), 0.0, no_readings).value == 30.0
    assert layer.check(Proposal("water", "kitchen-light", "dimmer", "off", None), 0.0,
                       no_readings).allowed
    assert layer.check(hvac("cool", None), 0.0, no_readings).allowed


def test_an_integer_is_compared_exactly_not_after_rounding_to_float() -> None:
    text = CONFIG.replace("value: {min: 0, max: 1}", "value: {min: 0, max: 9007199254740992}")
    layer = SafetyLayer(config(text))  # 2**53: the next integer rounds down onto it
    p = Proposal("water", "kitchen-light", "dimmer", "on", 2**53)
    assert layer.check(p, 0.0, no_readings).allowed
    p = Proposal("water", "kitchen-light", "dimmer", "on", 2**53 + 1)
    refused(layer.check(p, 0.0, no_readings), "value", "outside")


@pytest.mark.parametrize("value", [16, 16.0, 28, 28.0, 22.5])
def test_range_is_inclusive(layer: SafetyLayer, value: float) -> None:
    assert layer.check(hvac("cool", value), 0.0, no_readings) == Verdict(True, "ok", float(value))


def test_each_policy_has_its_own_range(layer: SafetyLayer) -> None:
    refused(layer.check(hvac("heat", 21.0, "night"), 0.0, no_readings), "value", "[16, 20.5]")
    assert layer.check(hvac("heat", 21.0, "climate"), 0.0, no_readings).allowed


def test_off_never_carries_a_value_and_cool_may_keep_the_setpoint(layer: SafetyLayer) -> None:
    assert layer.check(hvac("off", None), 0.0, no_readings) == Verdict(True, "ok", None)
    refused(layer.check(hvac("off", 22.0), 0.0, no_readings), "value", "takes no value")
    assert layer.check(hvac("cool", None), 0.0, no_readings) == Verdict(True, "ok", None)


def test_an_actuator_without_a_range_takes_no_value(layer: SafetyLayer) -> None:
    assert layer.check(valve("open"), 0.0, no_readings) == Verdict(True, "ok", None)
    refused(layer.check(valve("open", 1.0), 0.0, no_readings), "value", "takes no value")
    refused(layer.check(valve("open", 0), 0.0, no_readings), "value")


def test_malformed_proposals(layer: SafetyLayer) -> None:
    refused(layer.check(hvac("cool", source="model"), 0.0, no_readings), "malformed")
    p = Proposal(cast(str, None), "livingroom-hvac", "hvac", "cool", 22.0)
    refused(layer.check(p, 0.0, no_readings), "malformed")
    p = Proposal("climate", "livingroom-hvac", "hvac", cast(str, ["cool"]), 22.0)
    refused(layer.check(p, 0.0, no_readings), "malformed")


def test_reasons_are_one_short_line_even_for_huge_model_output(layer: SafetyLayer) -> None:
    verdict = layer.check(hvac("x" * 10_000 + "\n"), 0.0, no_readings)
    refused(verdict, "action")
    assert "\n" not in verdict.reason and len(verdict.reason) < 200
    verdict = layer.check(hvac("cool", "2" * 10_000), 0.0, no_readings)
    assert "\n" not in verdict.reason and len(verdict.reason) < 200


def test_refusals_are_counted_by_kind(layer: SafetyLayer) -> None:
    layer.check(hvac("cool", policy="nope"), 0.0, no_readings)
    layer.check(hvac("cool", policy="nope2"), 0.0, no_readings)
    layer.check(hvac("cool", float("nan")), 0.0, no_readings)
    layer.check(hvac("cool"), 0.0, no_readings)
    assert layer.refusals == {"policy": 2, "value": 1}


# -- when/then interlocks --------------------------------------------------------------------


def test_while_the_condition_holds_only_the_then_action_is_allowed(layer: SafetyLayer) -> None:
    refused(layer.check(valve("open"), 0.0, LEAK), "interlock", "'leak closes the valve'")
    assert layer.check(valve("close"), 0.0, LEAK).allowed
    assert layer.check(valve("open"), 0.0, DRY).allowed


@pytest.mark.parametrize("water", [None, 0.5, float("nan")])
def test_an_unknown_or_unmet_condition_does_not_hold(layer: SafetyLayer, water: Any) -> None:
    def reading(device: str, quantity: str) -> float | None:
        return cast("float | None", water)

    assert layer.check(valve("open"), 0.0, reading).allowed
    assert layer.forced(0.0, reading) == []


def test_interlocks_force_their_action_until_it_is_in_hand(layer: SafetyLayer) -> None:
    forced = Proposal("water", "kitchen-valve", "valve", "close", None, "interlock")
    assert layer.forced(0.0, DRY) == []
    assert layer.forced(0.0, LEAK) == [forced]
    assert send(layer, forced, 0.0, LEAK).allowed
    assert layer.forced(1.0, LEAK) == []  # sent, waiting for the actuator
    assert layer.forced(29.9, LEAK) == []
    assert layer.forced(30.0, LEAK) == [forced]  # the command expired unanswered: again
    assert send(layer, forced, 30.0, LEAK).allowed
    layer.record_state("kitchen-valve", "valve", "close", None)
    assert layer.forced(1000.0, LEAK) == []  # it reports closed
    layer.record_state("kitchen-valve", "valve", "open", None)  # someone opened it by hand
    assert layer.forced(1001.0, LEAK) == [forced]


def test_forced_commands_skip_rate_limits_and_dwell(layer: SafetyLayer) -> None:
    assert send(layer, valve("open"), 0.0, DRY).allowed
    refused(layer.check(valve("close"), 1.0, LEAK), "min_interval")
    [forced] = layer.forced(1.0, LEAK)
    assert send(layer, forced, 1.0, LEAK).allowed


def test_forced_commands_still_pass_the_allow_list_and_range(layer: SafetyLayer) -> None:
    refused(layer.check(valve("close", 1.0, "interlock"), 0.0, LEAK), "value")
    p = Proposal("water", "kitchen-pump", "pump", "off", None, "interlock")
    refused(layer.check(p, 0.0, LEAK), "interlock", "no interlock in force")
    refused(layer.check(valve("close", source="interlock"), 0.0, DRY), "interlock")


def test_an_interlock_proposal_can_be_the_state_already_reported(layer: SafetyLayer) -> None:
    layer.record_state("kitchen-valve", "valve", "close", None)
    refused(layer.check(valve("close", source="interlock"), 0.0, LEAK), "unchanged")


def test_a_then_action_no_policy_can_send_is_a_config_error() -> None:
    text = CONFIG.replace('then: "kitchen-valve/valve=close"', 'then: "garage-door/door=close"')
    with pytest.raises(ConfigError, match=r"interlocks\[0\]\.then: no policy lists garage-door"):
        SafetyLayer(config(text))


def test_a_then_action_that_needs_a_value_is_a_config_error() -> None:
    text = CONFIG.replace('then: "kitchen-valve/valve=close"',
                          'then: "kitchen-lamp/lamp=brightness"')
    with pytest.raises(AgentError, match="and no value"):
        SafetyLayer(config(text))


def test_the_forced_command_uses_the_first_policy_that_may_send_it() -> None:
    text = CONFIG.replace('then: "kitchen-valve/valve=close"', 'then: "livingroom-hvac/hvac=off"')
    layer = SafetyLayer(config(text))
    [forced] = layer.forced(0.0, LEAK)
    assert forced == Proposal("climate", "livingroom-hvac", "hvac", "off", None, "interlock")
    refused(layer.check(hvac("heat", 18.0, "night"), 0.0, LEAK), "interlock")


# -- never_together --------------------------------------------------------------------------


def test_never_together_uses_the_reported_state(layer: SafetyLayer) -> None:
    layer.record_state("livingroom-window", "window", "open", None)
    refused(layer.check(hvac("heat", 21.0), 0.0, DRY), "never_together", "window=open")
    assert layer.check(hvac("cool", 21.0), 0.0, DRY).allowed
    layer.record_state("livingroom-window", "window", "close", None)
    assert layer.check(hvac("heat", 21.0), 0.0, DRY).allowed


def test_never_together_uses_what_was_sent_until_a_state_arrives(layer: SafetyLayer) -> None:
    assert send(layer, hvac("heat", 21.0), 0.0).allowed
    refused(layer.check(window("open"), 0.0, DRY), "never_together", "hvac=heat")
    layer.record_state("livingroom-hvac", "hvac", "off", None)  # it did not heat after all
    assert layer.check(window("open"), 0.0, DRY).allowed


def test_never_together_with_a_pending_change_counts_both(layer: SafetyLayer) -> None:
    layer.record_state("livingroom-window", "window", "close", None)
    assert send(layer, window("open"), 0.0).allowed  # in flight, not yet reported
    refused(layer.check(hvac("heat", 21.0), 1.0, DRY), "never_together")


# -- already in that state -------------------------------------------------------------------


def test_no_resending_the_reported_state(layer: SafetyLayer) -> None:
    layer.record_state("livingroom-hvac", "hvac", "cool", 22.0)
    refused(layer.check(hvac("cool", 22), 0.0, no_readings), "unchanged", "already reports cool 22")
    assert layer.check(hvac("cool", 23.0), 0.0, no_readings).allowed
    layer.record_state("livingroom-window", "window", "close", None)
    refused(layer.check(window("close"), 0.0, no_readings), "unchanged", "reports close")


def test_the_reported_state_may_be_restored_while_another_command_is_in_flight(
    layer: SafetyLayer,
) -> None:
    layer.record_state("livingroom-hvac", "hvac", "cool", 22.0)
    assert send(layer, hvac("cool", 24.0), 0.0).allowed
    assert layer.check(hvac("cool", 22.0), 30.0, no_readings).allowed


# -- rate limits and dwell on an injected clock ----------------------------------------------


def test_min_interval(layer: SafetyLayer) -> None:
    assert send(layer, hvac("cool", 22.0), 100.0).allowed
    refused(layer.check(hvac("cool", 23.0), 129.9, no_readings), "min_interval", "30s")
    assert layer.check(hvac("cool", 23.0), 130.0, no_readings).allowed


def test_min_interval_is_per_actuator_and_per_policy(layer: SafetyLayer) -> None:
    assert send(layer, hvac("heat", 18.0, "night"), 0.0).allowed
    assert layer.check(window("close"), 1.0, no_readings).allowed  # another actuator
    refused(layer.check(hvac("heat", 19.0, "night"), 9.9, no_readings), "min_interval", "10s")
    assert layer.check(hvac("heat", 19.0, "night"), 10.0, no_readings).allowed
    refused(layer.check(hvac("heat", 19.0, "climate"), 10.0, no_readings), "min_interval")


def test_a_clock_that_went_back_refuses(layer: SafetyLayer) -> None:
    assert send(layer, hvac("cool", 22.0), 1000.0).allowed
    refused(layer.check(hvac("cool", 23.0), 500.0, no_readings), "min_interval")


def test_max_per_hour(layer: SafetyLayer) -> None:
    for i, t in enumerate([0.0, 30.0, 60.0, 90.0]):
        assert send(layer, hvac("cool", 20.0 + i), t).allowed
    refused(layer.check(hvac("cool", 25.0), 3599.0, no_readings), "max_per_hour", "4 commands")
    assert layer.check(hvac("cool", 25.0), 3600.0, no_readings).allowed  # the first is an hour old


def test_min_dwell(layer: SafetyLayer) -> None:
    assert send(layer, hvac("cool", 22.0), 0.0).allowed
    refused(layer.check(hvac("heat", 22.0), 60.0, no_readings), "min_dwell", "cool", "120s")
    assert send(layer, hvac("cool", 23.0), 60.0).allowed  # the same action is not a change
    refused(layer.check(hvac("heat", 22.0), 119.0, no_readings), "min_dwell")
    assert layer.check(hvac("heat", 22.0), 120.0, no_readings).allowed  # counted from the change


def test_refusal_order_allow_list_before_state_and_rates(layer: SafetyLayer) -> None:
    assert send(layer, hvac("cool", 22.0), 0.0).allowed
    refused(layer.check(hvac("cool", 99.0), 1.0, no_readings), "value")
    refused(layer.check(hvac("dry"), 1.0, no_readings), "action")
    layer.record_state("livingroom-hvac", "hvac", "cool", 22.0)
    refused(layer.check(hvac("cool", 22.0), 1.0, no_readings), "unchanged")
    refused(layer.check(hvac("cool", 23.0), 1.0, no_readings), "min_interval")
