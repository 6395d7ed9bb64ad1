"""Health value types and the state machine that turns findings into ok / suspect / faulty."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OK, SUSPECT, FAULTY = "ok", "suspect", "faulty"
STATES = (OK, SUSPECT, FAULTY)
#: which fault explains the others when several show at once (a stuck sensor also drifts)
PRECEDENCE = ("silent", "wrong_unit", "mixed_units", "out_of_range", "stuck", "noisy", "spiky",
              "drift", "contradicts", "no_ack", "no_effect", "fighting")


def _rank(finding: Finding) -> tuple[int, int]:
    order = PRECEDENCE.index(finding.fault) if finding.fault in PRECEDENCE else len(PRECEDENCE)
    level = 2 if finding.score >= 1.0 else 1 if finding.score >= 0.5 else 0
    return (level, -order)


def worst(findings: list[Finding]) -> Finding | None:
    """The finding that explains the others (faults before suspicions, by precedence)."""
    return max(findings, key=_rank, default=None)


@dataclass(frozen=True, slots=True)
class Finding:
    """One detector's result: ``score`` >= 1 is a fault, >= 0.5 a suspicion."""

    fault: str
    score: float
    evidence: dict[str, float]
    explanation: str
    started: float | None = None  # when the fault began, where the evidence shows it

    @property
    def state(self) -> str:
        return FAULTY if self.score >= 1.0 else SUSPECT if self.score >= 0.5 else OK


@dataclass(frozen=True, slots=True)
class Health:
    """What the health topic carries (retained) for one series or actuator."""

    state: str
    fault: str | None
    since: float
    confidence: float
    evidence: dict[str, float] = field(default_factory=dict)
    explanation: str = ""

    def message(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "fault": self.fault,
            "since": round(self.since, 3),
            "confidence": round(self.confidence, 3),
            "evidence": {k: round(v, 4) for k, v in self.evidence.items()},
            "explanation": self.explanation,
        }


def confidence(score: float) -> float:
    """A score as a number in [0, 1]: 0.5 at the suspicion line, 0.9 at the fault line."""
    if score <= 0:
        return 0.0
    return min(0.99, 0.5 + 0.4 * (score - 0.5) / 0.5) if score >= 0.5 else score


class Tracker:
    """One series' state. A fault is declared at once (the detectors already wait for their
    evidence) and cleared only after ``clear_checks`` checks in a row without it."""

    def __init__(self, name: str, start: float, clear_checks: int = 3) -> None:
        self.name = name
        self.clear_checks = clear_checks
        self.health = Health(OK, None, start, 0.0, {}, f"{name} looks healthy.")
        self._clean = 0

    def reset(self, now: float) -> None:
        """Healthy from now (a person dismissed the fault)."""
        self.health = Health(OK, None, now, 0.0, {}, f"{self.name} looks healthy.")
        self._clean = 0

    def update(self, now: float, findings: list[Finding]) -> Health | None:
        """Feed this check's findings; the new health if its state or fault changed."""
        top = worst(findings)
        state = OK if top is None else top.state
        current = self.health
        if state == OK and current.state != OK:
            self._clean += 1
            if self._clean < self.clear_checks:
                return None
        else:
            self._clean = 0
        if state == OK:
            fresh = Health(OK, None, now, 0.0, {}, f"{self.name} looks healthy.")
        else:
            assert top is not None
            since = now if top.started is None else min(now, top.started)
            fresh = Health(state, top.fault, since, confidence(top.score), top.evidence,
                           top.explanation)
        if (fresh.state, fresh.fault) == (current.state, current.fault):
            self.health = Health(current.state, current.fault, current.since, fresh.confidence,
                                 fresh.evidence, fresh.explanation)
            return None
        if current.state == FAULTY and fresh.state == SUSPECT and fresh.fault == current.fault:
            return None  # a fault fading to a suspicion is still the fault until it clears
        self.health = fresh
        return fresh
