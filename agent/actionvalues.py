"""Values per action: which of an actuator's actions a value range belongs to (pure, below
config)."""

from __future__ import annotations

# actions whose name is a quantity: a value is required
QUANTITY_ACTIONS = frozenset(
    ["brightness", "setpoint", "temperature", "position", "level", "speed", "volume"]
)
# actions that take a setpoint when the range does not say which ones do (it may be omitted)
SETPOINT_ACTIONS = frozenset(["cool", "heat", "auto"])
# actions that never take a value
PLAIN_ACTIONS = frozenset(["on", "off", "open", "close", "lock", "unlock", "stop", "idle"])


def value_actions(actions: list[str], listed: list[str] | None) -> list[str]:
    """The actions a range belongs to, or ValueError saying how to write it.

    Listed: each must be one of the actuator's actions. Not listed: the quantity actions
    (brightness, setpoint, ...) and setpoint actions (cool, heat); failing those, the legacy
    reading of ``actions: [on, off]`` with a range is "on" (a level), never "off".
    """
    if listed is not None:
        if not listed:
            raise ValueError("value.actions is empty: list the actions that take a value")
        unknown = [a for a in listed if a not in actions]
        if unknown:
            raise ValueError(f"value.actions: {unknown} not among the actions {actions}")
        return list(listed)
    takes = [a for a in actions if a in QUANTITY_ACTIONS or a in SETPOINT_ACTIONS]
    if takes:
        return takes
    if "on" in actions:
        return ["on"]
    raise ValueError(
        f"value: none of the actions {actions} takes a value ({', '.join(sorted(PLAIN_ACTIONS))} "
        f"never do); add value.actions naming the actions the range belongs to, or remove value"
    )


def value_required(action: str, takes: tuple[str, ...] | list[str]) -> bool:
    """A quantity action the range belongs to (brightness, setpoint, ...) needs its number; a
    setpoint action (cool, heat) may omit it (the device keeps its setpoint; null on the wire);
    on/off/open/close/lock/unlock never need one."""
    return action in takes and action in QUANTITY_ACTIONS
