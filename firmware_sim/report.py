"""One-line progress and an end-of-run summary of a :class:`~firmware_sim.house.House`."""

from __future__ import annotations

from firmware_sim.actuators import State
from firmware_sim.house import RoomSnapshot, Snapshot


def show_state(state: State) -> str:
    return state.action if state.value is None else f"{state.action} {state.value:g}"


def _room(room: RoomSnapshot) -> str:
    text = f"{room.name} {room.temperature:.1f}C"
    if room.target is not None:
        mark = "" if room.in_band else "!"
        text += f"{mark}[{room.target[0]:g}-{room.target[1]:g}]"
    if room.hvac is not None and room.hvac.action != "off":
        text += f" {show_state(room.hvac)}"
    return text


def progress_line(snap: Snapshot, outage: bool = False) -> str:
    """`day 1 07:30 out 9.8C | livingroom 21.2C[20-24] heat 22 | ... | commands 3 accepted ...`."""
    rooms = " | ".join(_room(r) for r in snap.rooms.values() if r.target is not None)
    broker = " | BROKER OUTAGE scheduled" if outage else ("" if snap.connected else " | offline")
    return (
        f"{snap.clock} out {snap.outside:.1f}C | {rooms} | commands {snap.accepted} accepted, "
        f"{snap.rejected} rejected | {snap.published} readings{broker}"
    )


def summary_lines(snap: Snapshot) -> list[str]:
    """Per room: temperature now, lowest, highest and time in band; per actuator: its state
    and the commands it accepted and refused, by reason."""
    lines = [f"{'room':<12} {'now':>6} {'min':>6} {'max':>6} {'band':>7} {'in band':>8}"]
    for r in snap.rooms.values():
        band = f"{r.target[0]:g}-{r.target[1]:g}" if r.target else "-"
        share = r.in_band_fraction
        inside = f"{share:.0%}" if share is not None else "-"
        lines.append(
            f"{r.name:<12} {r.temperature:6.1f} {r.min_temperature:6.1f} {r.max_temperature:6.1f}"
            f" {band:>7} {inside:>8}"
        )
    lines.append("actuators:")
    for key, a in snap.actuators.items():
        refused = ", ".join(f"{why} {n}" for why, n in sorted(a.rejected.items()))
        total = sum(a.rejected.values())
        lines.append(
            f"  {key:<22} {show_state(a.state):<10} {a.accepted} accepted, {total} rejected"
            + (f" ({refused})" if refused else "")
        )
    return lines
