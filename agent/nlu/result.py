"""The four outcomes of understanding a request: a match, a question, a refusal, or no match."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.nlu.entities import Entity


@dataclass(frozen=True, slots=True)
class Command:
    device: str
    actuator: str
    action: str
    value: float | None = None

    @property
    def text(self) -> str:
        value = "" if self.value is None else f" {self.value:g}"
        return f"{self.device}/{self.actuator}={self.action}{value}"


@dataclass(frozen=True, slots=True)
class Match:
    """One command per target ("the kitchen lights" may be several actuators)."""

    commands: tuple[Command, ...]
    language: str
    layer: str  # "templates", "own-templates" or "fuzzy"
    intent: str = ""


@dataclass(frozen=True, slots=True)
class Ambiguity:
    candidates: tuple[str, ...]  # entity labels
    question: str
    language: str


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str  # one sentence
    language: str = "en"


@dataclass(frozen=True, slots=True)
class NoMatch:
    """No template matched: the model may choose, only among ``candidates``, and its answer
    must pass ``check.check_answer`` against what the request itself said."""

    text: str  # normalised
    language: str
    candidates: tuple[Entity, ...] = ()
    numbers: tuple[float, ...] = ()
    polarity: frozenset[str] = field(default_factory=frozenset)  # actions the words point to


Outcome = Match | Ambiguity | Refusal | NoMatch
