"""Devices named once, in English, answer to their names in the home's other languages."""

from __future__ import annotations

from agent.nlu.vocabulary import names_in, with_translations


def test_room_and_kind_are_translated() -> None:
    assert names_in("de", "kitchen light")[:3] == ["Küchenlicht", "Küche Licht", "Licht Küche"]
    assert names_in("zh-CN", "living room air conditioning") == ["客厅空调"]
    assert "Gartenventil" in names_in("de", "garden valve")


def test_names_it_does_not_know_stay_as_they_are() -> None:
    assert names_in("de", "grandma's reading lamp") == []
    assert names_in("fr", "kitchen light") == []
    assert names_in("de", "kitchen") == []


def test_the_owners_aliases_come_first_and_english_adds_nothing() -> None:
    light = {"device": "kitchen-light", "actuator": "light", "name": "kitchen light",
             "aliases": ["Küchenlicht", "kitchen lamp"], "actions": ["on", "off"]}
    [only_en] = with_translations([light], ["en"])
    assert only_en["aliases"] == ["Küchenlicht", "kitchen lamp"]
    [both] = with_translations([light], ["en", "de", "zh-CN"])
    assert both["aliases"][:2] == ["Küchenlicht", "kitchen lamp"]
    assert both["aliases"].count("Küchenlicht") == 1
    assert "厨房灯" in both["aliases"] and "Küchenlampe" in both["aliases"]


def test_refusals_come_in_the_language_of_the_request() -> None:
    from agent.config import IntentsSection
    from agent.nlu.pipeline import Understander
    from agent.nlu.result import Refusal

    light = {"device": "kitchen-light", "actuator": "light", "name": "kitchen light",
             "actions": ["on", "off", "brightness"],
             "value": {"min": 0, "max": 100, "actions": ["brightness"]}}
    u = Understander(IntentsSection(languages=["en", "de", "zh"]), [light])
    german = u.understand("Schalte die Garage an")
    assert isinstance(german, Refusal) and german.language == "de"
    assert german.reason.startswith("unbekanntes Gerät")
    too_bright = u.understand("Dimme das Küchenlicht auf 150 Prozent")
    assert isinstance(too_bright, Refusal) and "außerhalb von 0 bis 100" in too_bright.reason
    chinese = u.understand("关掉车库的灯")
    assert isinstance(chinese, Refusal) and chinese.reason.startswith("未知设备")
    english = u.understand("open the garage")
    assert isinstance(english, Refusal) and english.reason.startswith("unknown device 'garage'")
