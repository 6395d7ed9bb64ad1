"""The digest every engine reads: fixed words, the comparison spelt out, the same text for the
same situation."""

from __future__ import annotations

from pathlib import Path

from agent.config import load_config
from agent.policy.digest import (
    InputView,
    amount,
    describe,
    fixed_part,
    make_digest,
    trend,
    zone,
)
from agent.service.learning import live_fixed_part


def test_zone_edges_are_inside() -> None:
    assert zone(20.0, (20.0, 24.0)) == zone(24.0, (20.0, 24.0)) == "inside"
    assert zone(24.01, (20.0, 24.0)) == "above"
    assert zone(19.99, (20.0, 24.0)) == "below"


def test_amounts_and_units() -> None:
    assert amount(23.456, "C") == "23.5 C"
    assert amount(55.0, "%") == "55.0%"
    assert amount(3.0, None) == "3.0"


def test_describe_spells_out_the_comparison() -> None:
    hot = InputView("livingroom-1 temperature", 27.5, "C", (20.0, 24.0))
    cold = InputView("room temperature", 18.0, "C", (20.0, 24.0))
    fine = InputView("room temperature", 22.0, "C", (20.0, 24.0))
    assert describe(hot) == ("Livingroom-1 temperature (target range 20-24 C): 27.5 C is ABOVE "
                             "by 3.5 C.")
    assert describe(cold) == "Room temperature (target range 20-24 C): 18.0 C is BELOW by 2.0 C."
    assert describe(fine) == "Room temperature (target range 20-24 C): 22.0 C is INSIDE."
    assert describe(InputView("humidity", 55.0, "%")) == "Humidity: 55.0%."
    assert describe(InputView("rh", 70.0, "%", (40.0, 60.0))) == (
        "Rh (target range 40-60%): 70.0% is ABOVE by 10.0%.")


def test_trend_is_relative_to_the_band() -> None:
    band = (20.0, 24.0)  # 2% of the width: 0.08 per minute
    assert trend(InputView("t", 22.0, "C", band, 0.07)) == "stable"
    assert trend(InputView("t", 22.0, "C", band, 0.09)) == "rising"
    assert trend(InputView("t", 22.0, "C", band, -0.09)) == "falling"
    assert trend(InputView("t", 22.0, "C", None, 0.09)) == "stable"  # 0.1 a minute without band
    assert trend(InputView("t", 22.0, "C", None, 0.11)) == "rising"
    assert trend(InputView("t", 22.0, "C", band, None)) == "stable"


def test_the_digest_takes_the_trend_of_the_first_input_with_a_band() -> None:
    inputs = [InputView("humidity", 50.0, "%", None, 5.0),
              InputView("temperature", 26.0, "C", (20.0, 24.0), -1.0)]
    text = make_digest(inputs)
    assert text == ("Humidity: 50.0%. Temperature (target range 20-24 C): 26.0 C is ABOVE by "
                    "2.0 C. Trend: falling.")
    assert make_digest(inputs) == text  # deterministic


def test_the_fixed_part_is_what_the_digests_of_a_policy_share() -> None:
    band = (20.0, 24.0)
    hot = make_digest([InputView("room temperature", 27.5, "C", band, 1.0)])
    fine = make_digest([InputView("room temperature", 21.0, "C", band, 0.0)])
    assert fixed_part(hot) == fixed_part(fine) == "Room temperature (target range 20-24 C):"
    assert hot.startswith(fixed_part(hot))
    assert fixed_part("Humidity: 50.0%. Trend: stable.") == "Humidity:"
    assert fixed_part("no colon here") == ""


def test_the_fixed_part_of_a_policy_is_known_before_its_first_reading() -> None:
    config = load_config(Path(__file__).resolve().parents[1] / "config" / "home.example.yaml")
    fixed = {p.name: live_fixed_part(config, p) for p in config.policies if p.targets}
    assert fixed["livingroom-climate"] == "Livingroom-1 temperature (target range 20-24 C):"
    assert fixed["bedroom-climate"] == "Bedroom-1 temperature (target range 18-21 C):"
