"""Actuator states (SPEC 5) as the agent takes them: only from the actuators it was told about.

Any client may publish on ``{p}/actuators/+/+/state``; a state of an actuator that no policy
or interlock names is ignored (counted), so invented names grow nothing in the agent.
"""

from __future__ import annotations

import json
import logging
import math
from typing import NamedTuple

from agent.config import Config

log = logging.getLogger(__name__)


class State(NamedTuple):
    device: str
    actuator: str
    action: str
    value: float | None
    command_id: object


def known_actuators(config: Config) -> frozenset[tuple[str, str]]:
    """Every ``(device, actuator)`` a policy commands or an interlock names."""
    known = {(a.device, a.actuator) for p in config.policies for a in p.actuators}
    for lock in config.interlocks:
        for item in [*(lock.never_together or []), *([lock.then] if lock.then else [])]:
            device, rest = item.split("/", 1)
            known.add((device, rest.split("=", 1)[0]))
    return frozenset(known)


def parse_state(
    topic: str, payload: bytes, known: frozenset[tuple[str, str]]
) -> State | None:
    """The state on ``{p}/actuators/{device}/{actuator}/state``; None if it is of an unknown
    actuator or malformed."""
    parts = topic.split("/")
    if len(parts) != 5 or (parts[2], parts[3]) not in known:
        return None
    try:
        state = json.loads(payload)
        action, value = state["action"], state.get("value")
    except (ValueError, KeyError, TypeError, RecursionError):
        log.warning("ignoring a malformed actuator state on %s", topic)
        return None
    if not isinstance(action, str):
        return None
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if number is not None and not math.isfinite(number):
        number = None
    return State(parts[2], parts[3], action, number, state.get("command_id"))
