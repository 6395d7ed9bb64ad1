"""Questions and reasons in the request's language (English where there are no words for it)."""

from __future__ import annotations

_DID_YOU_MEAN = {"en": "did you mean {options}?", "de": "Meinten Sie {options}?",
                 "zh": "您是指{options}？"}
_OR = {"en": " or ", "de": " oder ", "zh": "还是"}
_THE = {"en": "the ", "de": "", "zh": ""}
_MODE = {"en": "should the {name} heat or cool{to}?",
         "de": "Soll {name} heizen oder kühlen{to}?",
         "zh": "{name}要制热还是制冷{to}？"}
_TO = {"en": " to {v:g}", "de": " auf {v:g}", "zh": "到{v:g}度"}


def _base(lang: str) -> str:
    return lang.split("-")[0]


def did_you_mean(labels: list[str], lang: str) -> str:
    base = _base(lang) if _base(lang) in _DID_YOU_MEAN else "en"
    the = _THE[base]
    options = ", ".join(the + x for x in labels[:-1]) + _OR[base] + the + labels[-1]
    return _DID_YOU_MEAN[base].format(options=options)


def heat_or_cool(name: str, value: float | None, lang: str) -> str:
    base = _base(lang) if _base(lang) in _MODE else "en"
    to = "" if value is None else _TO[base].format(v=value)
    return _MODE[base].format(name=name, to=to)


_UNKNOWN = {"en": "unknown device {phrase!r}; the devices here are: {known}",
            "de": "unbekanntes Gerät {phrase!r}; die Geräte hier: {known}",
            "zh": "未知设备 {phrase!r}；这里的设备有：{known}"}
_OUT_OF_RANGE = {"en": "{v:g} is outside {lo:g} to {hi:g} for the {name}",
                 "de": "{v:g} liegt außerhalb von {lo:g} bis {hi:g} für {name}",
                 "zh": "{v:g} 超出了{name}的范围 {lo:g} 到 {hi:g}"}


def unknown_device(phrase: str, known: str, lang: str) -> str:
    base = _base(lang) if _base(lang) in _UNKNOWN else "en"
    return _UNKNOWN[base].format(phrase=phrase, known=known)


def out_of_range(value: float, lo: float, hi: float, name: str, lang: str) -> str:
    base = _base(lang) if _base(lang) in _OUT_OF_RANGE else "en"
    return _OUT_OF_RANGE[base].format(v=value, lo=lo, hi=hi, name=name)
