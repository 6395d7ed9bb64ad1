"""Normalising a request: unicode, case, apostrophes, numbers in words, units, relative changes."""

from __future__ import annotations

import pytest

from agent.nlu.normalise import normalise
from agent.nlu.numbers_zh import digits


@pytest.mark.parametrize(("text", "lang", "want"), [
    ("KITCHEN LIGHT ON!!!", "en", "kitchen light on"),
    ("it’s too warm, cool it to twenty-one °C!", "en", "it is too warm cool it to 21 degrees"),
    ("heat the lounge to 23°C", "en", "heat the lounge to 23 degrees"),
    ("dim to thirty per cent", "en", "dim to 30%"),
    ("Ｋｉｔｃｈｅｎ light ON", "en", "kitchen light on"),  # NFKC: full-width letters
    ("Stelle die Heizung auf einundzwanzig Grad", "de", "stelle die heizung auf 21 grad"),
    ("Heizung auf 21,5 °C.", "de", "heizung auf 21.5 Grad"),
    ("把空调调到二十三度", "zh-CN", "把空调调到23度"),
    ("把厨房灯的亮度调到百分之三十", "zh-CN", "把厨房灯的亮度调到百分之30"),
])
def test_normalise(text: str, lang: str, want: str) -> None:
    assert normalise(text, lang).text == want


def test_numbers_and_relative_changes() -> None:
    assert normalise("Heizung auf 21,5 °C", "de").numbers == (21.5,)
    assert normalise("make it two degrees warmer", "en").delta == 2.0
    assert normalise("three degrees cooler please", "en").delta == -3.0
    assert normalise("温度调高两度", "zh").delta == 2.0
    assert normalise("turn on one light", "en").numbers == ()  # "one" is not a quantity here


@pytest.mark.parametrize(("text", "want"), [
    ("二十三度", "23度"), ("十八度", "18度"), ("二十一点五度", "21.5度"), ("一百", "100"),
    ("三百二十五", "325"), ("开一下灯", "开一下灯"), ("设为十六度", "设为16度"),
])
def test_chinese_numerals(text: str, want: str) -> None:
    assert digits(text) == want
