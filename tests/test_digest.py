"""The digest every engine reads: fixed words, the comparison spelt out, the same text for the
same situation."""

from __future__ import annotations

from agent.policy.digest import InputView, amount, describe, make_digest, trend, zone


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
    assert describe(hot) == ("Livingroom-1 temperature 27.5 C is ABOVE the target range "
                             "20-24 C by 3.5 C.")
    assert describe(cold) == "Room temperature 18.0 C is BELOW the target range 20-24 C by 2.0 C."
    assert describe(fine) == "Room temperature 22.0 C is INSIDE the target range 20-24 C."
    assert describe(InputView("humidity", 55.0, "%")) == "Humidity: 55.0%."
    assert describe(InputView("rh", 70.0, "%", (40.0, 60.0))).endswith("40-60% by 10.0%.")


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
    assert text == ("Humidity: 50.0%. Temperature 26.0 C is ABOVE the target range 20-24 C by "
                    "2.0 C. Trend: falling.")
    assert make_digest(inputs) == text  # deterministic
