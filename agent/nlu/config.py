"""Configuration of intents: languages, fuzzy names, and which actions a value range belongs to."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.nlu.values import value_actions

# short codes people write -> the template collection's own codes
LANGUAGE_ALIASES = {"zh": "zh-CN", "zh-cn": "zh-CN", "zh-hans": "zh-CN", "zh-tw": "zh-TW",
                    "zh-hant": "zh-TW", "zh-hk": "zh-HK", "pt-br": "pt-BR"}


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

    def for_actions(self, actions: list[str]) -> list[str]:
        """The actuator's actions this range belongs to (ValueError when unreadable)."""
        return value_actions(actions, self.actions)
