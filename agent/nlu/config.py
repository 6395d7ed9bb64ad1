"""Configuration of intents: languages, fuzzy names, and which actions a value range belongs to."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.nlu.entities import PLAIN_ACTIONS, QUANTITY_ACTIONS

# short codes people write -> the template collection's own codes
LANGUAGE_ALIASES = {"zh": "zh-CN", "zh-cn": "zh-CN", "zh-hans": "zh-CN", "zh-tw": "zh-TW",
                    "zh-hant": "zh-TW", "zh-hk": "zh-HK", "pt-br": "pt-BR"}
# actions that take a setpoint when the range does not say which ones do
SETPOINT_ACTIONS = frozenset(["cool", "heat", "auto"])


def template_language(code: str) -> str:
    return LANGUAGE_ALIASES.get(code.lower(), code)


class IntentsConfig(BaseModel):
    """``intents:`` in the agent config (all keys optional)."""

    model_config = ConfigDict(extra="forbid")

    languages: list[str] = Field(default_factory=lambda: ["en"], min_length=1)
    fuzzy_min: float = Field(default=80.0, ge=50, le=100)  # rapidfuzz score to accept a typo
    fuzzy_margin: float = Field(default=6.0, ge=0, le=50)  # closer than this: ask, not guess

    @field_validator("languages")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        from agent.nlu.templates import available_languages

        known = available_languages()
        codes = [template_language(v) for v in value]
        bad = [v for v, c in zip(value, codes, strict=True) if c not in known]
        if bad:
            raise ValueError(f"no sentence templates for {bad}; known: {', '.join(sorted(known))}")
        return list(dict.fromkeys(codes))


class ValueSpec(BaseModel):
    """``value: {min, max, actions: [...]}``: the range belongs to ``actions`` only."""

    model_config = ConfigDict(extra="forbid")

    min: float
    max: float
    actions: list[str] | None = None

    @model_validator(mode="after")
    def _order(self) -> ValueSpec:
        if self.min > self.max:
            raise ValueError(f"value range: min {self.min:g} is greater than max {self.max:g}")
        if self.actions is not None and not self.actions:
            raise ValueError("value.actions is empty: list the actions that take a value")
        return self


def value_actions(actions: list[str], value: ValueSpec | None) -> list[str]:
    """The actions the range belongs to, or ValueError saying how to write it.

    Listed: each must be one of the actuator's actions. Not listed: the quantity actions
    (brightness, setpoint, ...) and setpoint actions (cool, heat); failing those, the legacy
    reading of ``actions: [on, off]`` with a range is "on" (a level), never "off".
    """
    if value is None:
        return []
    if value.actions is not None:
        unknown = [a for a in value.actions if a not in actions]
        if unknown:
            raise ValueError(f"value.actions: {unknown} not among the actions {actions}")
        return list(value.actions)
    takes = [a for a in actions if a in QUANTITY_ACTIONS or a in SETPOINT_ACTIONS]
    if takes:
        return takes
    if "on" in actions:
        return ["on"]
    raise ValueError(
        f"value: none of the actions {actions} takes a value ({', '.join(sorted(PLAIN_ACTIONS))} "
        f"never do); add value.actions naming the actions the range belongs to, or remove value"
    )


def value_required(action: str) -> bool:
    """A quantity action needs its number; a setpoint action or a level "on" may omit it."""
    return action in QUANTITY_ACTIONS
