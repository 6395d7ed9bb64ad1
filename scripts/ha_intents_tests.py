"""Extract Home Assistant's own test sentences (github.com/home-assistant/intents, tests/<lang>/,
CC BY 4.0) for the intents the agent supports into agent/bench/data/ha_intents_tests.json.

Usage: python scripts/ha_intents_tests.py <checkout of home-assistant/intents> "<commit, date>"

Use the checkout of the release that matches the installed home-assistant-intents: the tests of
another release measure sentences its templates were not written for.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

LANGS = {"en": "en", "de": "de", "zh-cn": "zh-CN"}
DOMAINS = ("light", "switch", "fan", "lock", "valve", "cover", "climate", "homeassistant")
INTENTS = ("HassTurnOn", "HassTurnOff", "HassLightSet", "HassClimateSetTemperature")


def wanted(path: Path) -> bool:
    domain, _, intent = path.stem.partition("_")
    return domain in DOMAINS and intent in INTENTS


def main(root: Path) -> None:
    out: dict[str, object] = {
        "source": "https://github.com/home-assistant/intents tests/ (CC BY 4.0)",
        "snapshot": sys.argv[2] if len(sys.argv) > 2 else "unknown",
    }
    for folder, lang in LANGS.items():
        fixtures = yaml.safe_load((root / "tests" / folder / "_fixtures.yaml").read_text())
        areas = {a["id"]: a["name"] for a in fixtures.get("areas", [])}
        entities = [{"name": e["name"], "id": e["id"], "area": areas.get(e.get("area"))}
                    for e in fixtures.get("entities", [])]
        cases = []
        for path in sorted((root / "tests" / folder).glob("*.yaml")):
            if not wanted(path):
                continue
            for test in yaml.safe_load(path.read_text()).get("tests", []):
                intent = test.get("intent") or {}
                for sentence in test.get("sentences", []):
                    cases.append({"file": path.name, "sentence": sentence,
                                  "intent": intent.get("name"), "slots": intent.get("slots", {}),
                                  "context": bool(intent.get("context") or
                                                  test.get("context"))})
        out[lang] = {"entities": entities, "cases": cases}
    target = Path(__file__).parent.parent / "agent" / "bench" / "data" / "ha_intents_tests.json"
    target.write_text(json.dumps(out, ensure_ascii=False, indent=0) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
