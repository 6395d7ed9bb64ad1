"""Simulated actuators: they take signed commands (SPEC 4), change a room, report state (SPEC 5).

An :class:`Actuator` holds no connection: whoever owns the MQTT client hands it each payload
that arrives on :attr:`Actuator.topic_set` and publishes :meth:`Actuator.state_payload`
(retained) on :attr:`Actuator.topic_state` when :meth:`Actuator.handle` accepts a command.

Nonces outlive a restart: with a ``state_dir`` an actuator keeps them in a file there
(:mod:`firmware_sim.nonces`); without one, or with its file lost, it refuses every command
made before it booted, since it cannot know whether it applied it already.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.policy.signing import REJECTIONS, NonceMemory, check_command, parse_command
from firmware_sim import faults
from firmware_sim.nonces import StoredNonces
from firmware_sim.physics import Controls

log = logging.getLogger(__name__)

#: Reasons :meth:`Actuator.handle` gives on top of :func:`check_command`'s.
UNKNOWN_ACTION, OUT_OF_RANGE, WRONG_DEVICE = "unknown action", "out of range", "wrong device"
BEFORE_BOOT, NO_MEMORY = "made before boot", "cannot keep its nonce"
REASONS = (*REJECTIONS, WRONG_DEVICE, UNKNOWN_ACTION, OUT_OF_RANGE, BEFORE_BOOT, NO_MEMORY)


@dataclass(frozen=True, slots=True)
class Kind:
    """What an actuator of one kind understands: its actions, value range and resting action.
    The value is a setpoint (hvac) or a level in percent; ``None`` means it takes no value."""

    actions: tuple[str, ...]
    range: tuple[float, float] | None
    initial: str


KINDS: dict[str, Kind] = {
    "hvac": Kind(("cool", "heat", "off"), (16.0, 30.0), "off"),
    "light": Kind(("on", "off", "brightness"), (0.0, 100.0), "off"),
    "fan": Kind(("on", "off"), (0.0, 100.0), "off"),
    "valve": Kind(("open", "close"), (0.0, 100.0), "close"),
    "lock": Kind(("lock", "unlock"), None, "lock"),
}


@dataclass(frozen=True, slots=True)
class ActuatorSpec:
    """One actuator: ``device``, its kind as ``actuator`` (the topic level), its value range
    (the kind's by default) and the state it starts in."""

    device: str
    actuator: str
    range: tuple[float, float] | None = None
    action: str | None = None
    value: float | None = None

    def __post_init__(self) -> None:
        if self.actuator not in KINDS:
            raise ValueError(f"actuator must be one of {', '.join(KINDS)}, got {self.actuator!r}")
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError(f"range must be [low, high] with low < high, got {list(self.range)}")
        if self.range is not None and self.kind.range is None:
            raise ValueError(f"a {self.actuator} takes no value, so it has no range")
        if self.action is not None and self.action not in self.kind.actions:
            raise ValueError(
                f"a {self.actuator} starts in one of {', '.join(self.kind.actions)}, "
                f"got {self.action!r}"
            )
        if valid_value(self.value, self.value_range) is None and self.value is not None:
            raise ValueError(f"value {self.value} is outside the range {self.value_range}")

    @property
    def kind(self) -> Kind:
        return KINDS[self.actuator]

    @property
    def value_range(self) -> tuple[float, float] | None:
        return self.range if self.range is not None else self.kind.range

    @property
    def key(self) -> str:
        return f"{self.device}/{self.actuator}"


def valid_value(value: object, bounds: tuple[float, float] | None) -> float | None:
    """``value`` as a float if it is a finite number inside ``bounds``, else None."""
    if bounds is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) and bounds[0] <= number <= bounds[1] else None


@dataclass(frozen=True, slots=True)
class State:
    """What an actuator reports (SPEC 5)."""

    action: str
    value: float | None
    ts: float
    command_id: str | None

    def payload(self) -> bytes:
        return json.dumps(
            {
                "action": self.action,
                "value": self.value,
                "ts": self.ts,
                "command_id": self.command_id,
            }
        ).encode()


def apply(spec: ActuatorSpec, action: str, value: float | None, controls: Controls) -> None:
    """What ``action`` does to a room: a setpoint, a level in percent, a bolt."""
    kind = spec.actuator
    if kind == "hvac":
        controls.hvac_mode = action
        if value is not None:
            controls.setpoint = value
        return
    level = (100.0 if value is None else value) if action in ("on", "open", "brightness") else 0.0
    if kind == "light":
        controls.light = level
    elif kind == "fan":
        controls.fan = level
    elif kind == "valve":
        controls.valve = level
    else:
        controls.locked = action == "lock"


class Actuator:
    """One actuator's firmware: checks commands, applies them to ``controls``, counts why not."""

    def __init__(
        self,
        spec: ActuatorSpec,
        key: bytes,
        *,
        prefix: str = "edge",
        controls: Controls | None = None,
        clock: Callable[[], float] = time.time,
        nonces: NonceMemory | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.spec = spec
        self.key = key
        self.controls = controls if controls is not None else Controls()
        self.clock = clock
        path = None if state_dir is None else state_dir / f"{spec.device}-{spec.actuator}.nonces"
        self.nonces = nonces if nonces is not None else StoredNonces(path, clock())
        self.topic_set = f"{prefix}/actuators/{spec.device}/{spec.actuator}/set"
        self.topic_state = f"{prefix}/actuators/{spec.device}/{spec.actuator}/state"
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.fault: faults.ActuatorFault | None = None  # set by the house once it sets in
        action = spec.action or spec.kind.initial
        apply(spec, action, spec.value, self.controls)
        self.state = State(action, spec.value, clock(), None)

    def state_payload(self) -> bytes:
        return self.state.payload()

    def handle(self, payload: bytes | Mapping[str, object]) -> str | None:
        """Apply a command if it passes every check (None), else count and return the reason."""
        reason = check_command(payload, self.key, self.clock(), self.nonces)
        command = parse_command(payload) if reason is None else None
        if command is not None:
            reason = self._refusal(command) or self._remember()
        if reason is not None or command is None:
            self.rejected[reason or "malformed"] += 1
            return reason or "malformed"
        value = valid_value(command["value"], self.spec.value_range)  # checked: None or inside
        if self.fault is not None and self.fault.kind == "ignore":
            self.rejected[faults.IGNORED] += 1
            return faults.IGNORED
        self._set(str(command["action"]), value, str(command["id"]))
        self.accepted += 1
        return None

    def _refusal(self, command: Mapping[str, object]) -> str | None:
        if (command["device"], command["actuator"]) != (self.spec.device, self.spec.actuator):
            return WRONG_DEVICE
        ts = command["ts"]
        floor = getattr(self.nonces, "floor", None)
        if floor is not None and isinstance(ts, (int, float)) and ts < floor:
            return BEFORE_BOOT
        if command["action"] not in self.spec.kind.actions:
            return UNKNOWN_ACTION
        value = command["value"]
        if value is not None and valid_value(value, self.spec.value_range) is None:
            return OUT_OF_RANGE
        return None

    def _remember(self) -> str | None:
        """Keep the nonce before acting on the command: a crash after acting cannot let it
        replay."""
        if not isinstance(self.nonces, StoredNonces):
            return None
        try:
            self.nonces.save(self.clock())
        except OSError as exc:
            log.error("%s: cannot keep the nonce memory: %s; command refused", self.spec.key, exc)
            return NO_MEMORY
        return None

    def override(self, action: str, value: float | None = None) -> None:
        """A person at the wall switch: the state changes and no command caused it."""
        if action not in self.spec.kind.actions:
            raise ValueError(f"{self.spec.key}: unknown action {action!r}")
        if value is not None and valid_value(value, self.spec.value_range) is None:
            raise ValueError(f"{self.spec.key}: value {value} is out of range")
        self._set(action, value, None)

    def _set(self, action: str, value: float | None, command_id: str | None) -> None:
        acts = True
        if self.fault is not None:
            action, value, acts = faults.outcome(self.fault, action, value)
        if acts:
            apply(self.spec, action, value, self.controls)
        self.state = State(action, value, self.clock(), command_id)
