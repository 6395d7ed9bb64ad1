"""The safety layer: the last word before the outbox (SPEC 4).

Whatever proposes a command — a policy's model, an intent, an interlock — the proposal passes
:meth:`SafetyLayer.check` first. Nothing the model writes reaches an actuator unchecked: the
policy, actuator and action must be in the configured allow-list and the value a finite number
inside the configured range. Then interlocks, "already in that state" and rate limits apply.

Pure code: the clock and the latest sensor readings are parameters; the only state is what
the caller reports through :meth:`SafetyLayer.record_sent` and :meth:`SafetyLayer.record_state`.

Proposals arrive on several threads at once (a band crossing, a schedule, an intent, an
interlock, a group's leader). Checking one and recording it as sent must be one step, or two
proposals that are each fine alone (heat, and the fan on; two commands inside min_interval)
both pass before either is recorded: :meth:`SafetyLayer.reserve` is that step, under one lock
shared by every method that reads or writes the state. The caller sends after it returns,
outside the lock, so no broker or disk I/O ever runs under it.
"""

from __future__ import annotations

import math
import operator
import re
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.actionvalues import value_required
from agent.config import (
    HEALTH_CONDITION,
    ActuatorConfig,
    Config,
    InterlockConfig,
    SafetyConfig,
)
from agent.errors import ConfigError
from agent.numbers import finite_number as _number

Reading = Callable[[str, str], float | None]  # (device, quantity) -> latest cleaned value
# "device/name" -> (state, fault) of a series or actuator, None while unknown
HealthLookup = Callable[[str], tuple[str, str | None] | None]
SOURCES = ("policy", "intent", "interlock")
KINDS = (  # the refusal counters, in the order the rules run
    "malformed",
    "policy",
    "actuator",
    "action",
    "value",
    "interlock",
    "never_together",
    "unchanged",
    "min_interval",
    "max_per_hour",
    "min_dwell",
)
HOUR = 3600.0
_HISTORY_MAX = 10_000  # send times kept per actuator, whatever the clock does
_SHOW_MAX = 60
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}
_CONDITION = re.compile(r"^([^/\s]+)/([^/\s]+)\s*(<=|>=|<|>)\s*(-?\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class Proposal:
    """A command someone wants sent. ``value`` may be anything a model wrote."""

    policy: str
    device: str
    actuator: str
    action: str
    value: object
    source: str = "policy"  # "policy", "intent" or "interlock"


@dataclass(frozen=True)
class Verdict:
    """``allowed`` with the checked ``value``, or refused with a one-line ``reason``;
    ``kind`` is the refusal's short label (one of :data:`KINDS`, ``"ok"`` when allowed)."""

    allowed: bool
    reason: str
    value: float | None = None
    kind: str = "ok"


@dataclass(frozen=True)
class _Refused:
    kind: str
    reason: str


@dataclass(frozen=True)
class _Target:
    """``device/actuator=action``."""

    device: str
    actuator: str
    action: str

    @classmethod
    def parse(cls, text: str) -> _Target:
        where, action = text.split("=", 1)
        device, actuator = where.split("/", 1)
        return cls(device, actuator, action)

    def __str__(self) -> str:
        return f"{self.device}/{self.actuator}={self.action}"


@dataclass(frozen=True)
class _Condition:
    device: str
    quantity: str
    op: str
    threshold: float

    @classmethod
    def parse(cls, text: str) -> _Condition:
        match = _CONDITION.match(text.strip())
        if match is None:  # the config has checked the shape already
            raise ConfigError([f"cannot read the interlock condition {text!r}"])
        device, quantity, op, number = match.groups()
        return cls(device, quantity, op, float(number))

    def holds(self, reading: Reading, health: HealthLookup) -> bool:
        """True only on a known, finite reading that meets the condition."""
        value = reading(self.device, self.quantity)
        if value is None or not math.isfinite(value):
            return False
        return _OPS[self.op](value, self.threshold)

    def __str__(self) -> str:
        return f"{self.device}/{self.quantity} {self.op} {self.threshold:g}"


@dataclass(frozen=True)
class _HealthCondition:
    """``device/name is faulty`` (or ``suspect``, which faulty also is, or one fault's name)."""

    key: str
    word: str

    @classmethod
    def parse(cls, text: str) -> _HealthCondition | None:
        match = HEALTH_CONDITION.match(text.strip())
        if match is None:
            return None
        device, name, word = match.groups()
        return cls(f"{device}/{name}", word)

    def holds(self, reading: Reading, health: HealthLookup) -> bool:
        """True only on a known health that meets the condition; unknown is not faulty."""
        known = health(self.key)
        if known is None:
            return False
        state, fault = known
        if self.word == "suspect":
            return state in ("suspect", "faulty")
        if self.word == "faulty":
            return state == "faulty"
        return state == "faulty" and fault == self.word

    def __str__(self) -> str:
        return f"{self.key} is {self.word}"


def _when(text: str) -> _Condition | _HealthCondition:
    return _HealthCondition.parse(text) or _Condition.parse(text)


def _no_health(key: str) -> tuple[str, str | None] | None:
    return None


@dataclass(frozen=True)
class _Forcing:
    """``when`` + ``then``; ``policy`` is the policy whose allow-list the forced command uses."""

    name: str
    when: _Condition | _HealthCondition
    then: _Target
    policy: str
    ttl: float


@dataclass(frozen=True)
class _Exclusion:
    """``never_together: [a, b]``."""

    name: str
    a: _Target
    b: _Target


@dataclass
class _Track:
    """What we know about one actuator."""

    reported: tuple[str, float | None] | None = None  # its last state message
    sent: tuple[str, float | None] | None = None  # our last command to it
    sent_at: float = -math.inf
    changed_at: float = -math.inf  # when a command last changed the action
    pending: bool = False  # sent, and no state reported since
    times: deque[float] = field(default_factory=lambda: deque(maxlen=_HISTORY_MAX))

    def states(self) -> set[str]:
        """The actions it may be in: the one it reports, and one we sent it since."""
        out = {self.reported[0]} if self.reported else set()
        if self.pending and self.sent:
            out.add(self.sent[0])
        return out


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 1] + "…"


def _check_value(act: ActuatorConfig, action: str, value: object) -> float | _Refused | None:
    """The value as a float (or None) if ``act`` takes it with ``action``: a range belongs to
    the actions that take a value (brightness, setpoint; cool/heat may omit theirs and the
    device keeps its setpoint); on/off and the like never carry one."""
    takes = act.takes_value
    if act.value is None or action not in takes:
        if value is None:
            return None
        return _Refused("value", f"{act.key}={action} takes no value, got {_show(value)}")
    lo, hi = act.value.min, act.value.max
    if value is None:
        if not value_required(action, takes):
            return None
        return _Refused("value", f"{act.key}={action} needs a value in [{lo:g}, {hi:g}], got None")
    number = _number(value)
    if number is None:
        return _Refused("value", f"{act.key} value must be a finite number, got {_show(value)}")
    exact = value if isinstance(value, int) else number  # an int is compared exactly
    if not lo <= exact <= hi:
        return _Refused("value", f"{act.key} value {number:g} is outside [{lo:g}, {hi:g}]")
    return number


class SafetyLayer:
    """Checks every proposal against the configuration and what the actuators have done."""

    def __init__(self, config: Config) -> None:
        self._actuators: dict[str, dict[tuple[str, str], ActuatorConfig]] = {
            p.name: {(a.device, a.actuator): a for a in reversed(p.actuators)}  # first one wins
            for p in config.policies
        }
        self._safety: dict[str, SafetyConfig] = {p.name: p.safety for p in config.policies}
        self._tracks: dict[tuple[str, str], _Track] = {}
        self._lock = threading.RLock()  # check-and-reserve is one step (module docstring)
        self.refusals: Counter[str] = Counter()
        # health of series and actuators, for interlocks that name a fault; set by the agent
        self.health: HealthLookup = _no_health
        self._forcings, self._exclusions = self._interlocks(config.interlocks)

    # -- building ---------------------------------------------------------------------------

    def _interlocks(self, locks: list[InterlockConfig]) -> tuple[list[_Forcing], list[_Exclusion]]:
        forcings: list[_Forcing] = []
        exclusions: list[_Exclusion] = []
        errors: list[str] = []
        for i, lock in enumerate(locks):
            if lock.never_together is not None:
                a, b = (_Target.parse(side) for side in lock.never_together)
                exclusions.append(_Exclusion(lock.name, a, b))
            elif lock.when is not None and lock.then is not None:
                then = _Target.parse(lock.then)
                policy = self._policy_for(then)
                if policy is None:
                    errors.append(
                        f"interlocks[{i}].then: no policy lists {then.device}/{then.actuator} "
                        f"with the action {then.action!r} (and no value), so it cannot be sent"
                    )
                    continue
                ttl = self._safety[policy].command_ttl
                forcings.append(_Forcing(lock.name, _when(lock.when), then, policy, ttl))
        if errors:
            raise ConfigError(errors)
        return forcings, exclusions

    def _policy_for(self, target: _Target) -> str | None:
        """The first policy that may send ``target`` with no value."""
        for policy, actuators in self._actuators.items():
            act = actuators.get((target.device, target.actuator))
            if act is None or target.action not in act.actions:
                continue
            if not isinstance(_check_value(act, target.action, None), _Refused):
                return policy
        return None

    # -- checking ---------------------------------------------------------------------------

    def check(self, p: Proposal, now: float, reading: Reading) -> Verdict:
        """Allowed with the checked value, or refused with the first rule that says no.
        Only a look: a proposal that will be sent goes through :meth:`reserve` instead."""
        with self._lock:
            outcome = self._judge(p, now, reading)
            if isinstance(outcome, _Refused):
                self.refusals[outcome.kind] += 1
                return Verdict(False, outcome.reason, kind=outcome.kind)
            return Verdict(True, "ok", outcome)

    def reserve(self, p: Proposal, now: float, reading: Reading) -> Verdict:
        """:meth:`check`, and if allowed record the command as sent at ``now``, in one step:
        the caller must then send it (a send that fails keeps the reservation, which errs on
        the side of sending less)."""
        with self._lock:
            verdict = self.check(p, now, reading)
            if verdict.allowed:
                self.record_sent(p.device, p.actuator, p.action, verdict.value, now)
            return verdict

    def _judge(self, p: Proposal, now: float, reading: Reading) -> float | _Refused | None:
        entry = self._lookup(p)
        if isinstance(entry, _Refused):
            return entry
        act, safety = entry
        value = _check_value(act, p.action, p.value)
        if isinstance(value, _Refused):
            return value
        refusal = (
            self._when_then(p, reading)
            or self._never_together(p)
            or self._unchanged(p, value)
            or (None if p.source == "interlock" else self._rate(p, safety, now))
        )
        return refusal or value

    def _lookup(self, p: Proposal) -> tuple[ActuatorConfig, SafetyConfig] | _Refused:
        """The allow-list: policy, then actuator, then action."""
        names = (p.policy, p.device, p.actuator, p.action, p.source)
        if not all(isinstance(name, str) for name in names) or p.source not in SOURCES:
            return _Refused("malformed", f"malformed proposal {_show(names)}")
        actuators = self._actuators.get(p.policy)
        if actuators is None:
            return _Refused("policy", f"unknown policy {_show(p.policy)}")
        act = actuators.get((p.device, p.actuator))
        if act is None:
            where = _show(f"{p.device}/{p.actuator}")
            return _Refused("actuator", f"actuator {where} is not in policy {p.policy!r}")
        if p.action not in act.actions:
            allowed = ", ".join(act.actions)
            return _Refused(
                "action", f"action {_show(p.action)} is not one of {allowed} for {act.key}"
            )
        return act, self._safety[p.policy]

    def _when_then(self, p: Proposal, reading: Reading) -> _Refused | None:
        """While a condition holds only its ``then`` action; ``interlock`` proposals need one."""
        demanded = False
        for lock in self._forcings:
            then = lock.then
            if (then.device, then.actuator) != (p.device, p.actuator):
                continue
            if not lock.when.holds(reading, self.health):
                continue
            if p.action != then.action:
                return _Refused(
                    "interlock",
                    f"interlock {lock.name!r}: while {lock.when} only {then} is allowed",
                )
            demanded = True
        if p.source == "interlock" and not demanded:
            where = f"{p.device}/{p.actuator}={p.action}"
            return _Refused("interlock", f"no interlock in force demands {where}")
        return None

    def _never_together(self, p: Proposal) -> _Refused | None:
        mine = _Target(p.device, p.actuator, p.action)
        for lock in self._exclusions:
            for this, other in ((lock.a, lock.b), (lock.b, lock.a)):
                if this != mine or other.action not in self._states(other):
                    continue
                return _Refused(
                    "never_together",
                    f"interlock {lock.name!r}: {this} never together with {other}, "
                    f"and {other.device}/{other.actuator} is (or was just sent) {other.action}",
                )
        return None

    def _states(self, target: _Target) -> set[str]:
        track = self._tracks.get((target.device, target.actuator))
        return track.states() if track else set()

    def _unchanged(self, p: Proposal, value: float | None) -> _Refused | None:
        """No resending the state the actuator reports, unless another command is in flight."""
        track = self._tracks.get((p.device, p.actuator))
        if track is None or track.reported != (p.action, value):
            return None
        if track.pending and track.sent != track.reported:
            return None
        shown = p.action if value is None else f"{p.action} {value:g}"
        return _Refused("unchanged", f"{p.device}/{p.actuator} already reports {shown}")

    def _rate(self, p: Proposal, safety: SafetyConfig, now: float) -> _Refused | None:
        track = self._tracks.get((p.device, p.actuator))
        if track is None:
            return None
        where = f"{p.device}/{p.actuator}"
        since = now - track.sent_at
        if since < safety.min_interval:
            return _Refused(
                "min_interval",
                f"{where}: last command {since:.1f}s ago, min_interval is {safety.min_interval:g}s",
            )
        sent = sum(1 for t in track.times if t > now - HOUR)
        if sent >= safety.max_per_hour:
            return _Refused(
                "max_per_hour",
                f"{where}: {sent} commands in the last hour, max_per_hour is {safety.max_per_hour}",
            )
        kept = now - track.changed_at
        if track.sent is not None and p.action != track.sent[0] and kept < safety.min_dwell:
            return _Refused(
                "min_dwell",
                f"{where}: {track.sent[0]} was set {kept:.1f}s ago, "
                f"min_dwell is {safety.min_dwell:g}s",
            )
        return None

    # -- what happened ----------------------------------------------------------------------

    def record_sent(
        self, device: str, actuator: str, action: str, value: float | None, now: float
    ) -> None:
        """A command went to the outbox at ``now`` (:meth:`reserve` calls this itself)."""
        with self._lock:
            track = self._tracks.setdefault((device, actuator), _Track())
            if track.sent is None or track.sent[0] != action:
                track.changed_at = now
            track.sent = (action, None if value is None else float(value))
            track.sent_at = now
            track.pending = True
            track.times.append(now)
            while track.times and track.times[0] <= now - HOUR:
                track.times.popleft()

    def reported(self, device: str, actuator: str) -> str | None:
        """The action the actuator last reported, if any."""
        with self._lock:
            track = self._tracks.get((device, actuator))
            return None if track is None or track.reported is None else track.reported[0]

    def record_state(self, device: str, actuator: str, action: str, value: float | None) -> None:
        """The actuator reported its state (SPEC 5)."""
        with self._lock:
            track = self._tracks.setdefault((device, actuator), _Track())
            track.reported = (action, None if value is None else float(value))
            track.pending = False

    def forced(self, now: float, reading: Reading) -> list[Proposal]:
        """The commands interlocks demand now: each ``then`` whose condition holds and that
        its actuator neither reports nor was sent within the command's ttl."""
        out: list[Proposal] = []
        with self._lock:
            for lock in self._forcings:
                then = lock.then
                if not lock.when.holds(reading, self.health) or self._in_hand(lock, now):
                    continue
                proposal = Proposal(
                    lock.policy, then.device, then.actuator, then.action, None, "interlock"
                )
                if proposal not in out:
                    out.append(proposal)
        return out

    def _in_hand(self, lock: _Forcing, now: float) -> bool:
        """The actuator reports the action, or we sent it and the command has not expired."""
        track = self._tracks.get((lock.then.device, lock.then.actuator))
        if track is None:
            return False
        if track.pending and track.sent is not None:
            if track.sent[0] != lock.then.action:
                return False  # another command is in flight and would undo it
            if now - track.sent_at < lock.ttl:
                return True
        return track.reported is not None and track.reported[0] == lock.then.action
