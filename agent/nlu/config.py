"""Configuration of intents: languages, fuzzy names, and which actions a value range belongs to."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator

from agent.actionvalues import value_actions

# the section lives with the rest of the configuration; these names are kept for the layers
from agent.config import IntentsSection as IntentsConfig
from agent.config import template_language

__all__ = ["IntentsConfig", "ValueSpec", "template_language"]


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
