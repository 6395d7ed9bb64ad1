"""Chinese numerals in a sentence -> digits ("调到二十三度" -> "调到23度")."""

from __future__ import annotations

import re

_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
           "七": 7, "八": 8, "九": 9}
_UNITS = {"十": 10, "百": 100, "千": 1000}
_CHARS = "".join(_DIGITS) + "".join(_UNITS)
_RUN = re.compile(rf"[{_CHARS}]+(?:点[{''.join(_DIGITS)}]+)?")
# a single numeral is a number only next to these ("一下" is "a bit", not 1)
_BEFORE = ("到", "为", "成", "至", "之", "调", "设")
_AFTER = ("度", "%", "摄")


def integer(text: str) -> int:
    total, current = 0, 0
    for ch in text:
        if ch in _DIGITS:
            # "二三" is 23; after a unit ("二十三") the digit stands alone
            spelled = current and text[0] not in _UNITS
            current = current * 10 + _DIGITS[ch] if spelled else _DIGITS[ch]
        else:
            total += (current or 1) * _UNITS[ch]
            current = 0
    return total + current


def number(text: str) -> float:
    whole, _, frac = text.partition("点")
    value = float(integer(whole)) if whole else 0.0
    if frac:
        value += float("0." + "".join(str(_DIGITS[c]) for c in frac))
    return value


def digits(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        run = m.group(0)
        before = text[m.start() - 1] if m.start() else ""
        after = text[m.end()] if m.end() < len(text) else ""
        if len(run) == 1 and before not in _BEFORE and after not in _AFTER:
            return run
        if run.startswith("百") or run.startswith("千"):
            return run
        return f"{number(run):g}"

    return _RUN.sub(repl, text)
