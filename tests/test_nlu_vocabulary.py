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
