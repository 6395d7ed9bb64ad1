"""One actuator's health: commands against the states it reports and what the room did."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from agent.diagnosis.detectors import fmt
from agent.diagnosis.verdict import Finding

ACK_GRACE_S = 2.0  # on top of the command's TTL
FIGHTS_FAULTY, FIGHTS_SUSPECT = 3, 2
EFFECT_MARGIN = 1.0  # the room must be this far on the wrong side of the setpoint (K)
MIN_EFFECT = 0.08  # K over the effect window that a working HVAC changes the room's course by
MIN_POINTS = 8  # room readings in a window to judge it
MAX_ERROR = 0.25  # K: a change known less precisely than this (a noisy thermometer) proves nothing


@dataclass(frozen=True, slots=True)
class Sent:
    command_id: str
    ts: float
    action: str
    value: float | None
    deadline: float


@dataclass(frozen=True, slots=True)
class Timing:
    """How long effects take: ``effect_after`` of a heat/cool command before the room must have
    answered; overrides within ``fight_window`` of a command, counted over ``fight_memory``."""

    effect_after: float = 1200.0
    fight_window: float = 600.0
    fight_memory: float = 7200.0


def slope_change(points: list[tuple[float, float]], start: float, end: float) -> float | None:
    """The room's change over [start, end]: its least-squares slope times the span (noise in
    single readings barely moves it); None when too few readings or too noisy to tell."""
    inside = [(t, v) for t, v in points if start <= t <= end]
    if len(inside) < MIN_POINTS:
        return None
    n = len(inside)
    mt = sum(t for t, _ in inside) / n
    mv = sum(v for _, v in inside) / n
    var = sum((t - mt) ** 2 for t, _ in inside)
    if var <= 0:
        return None
    slope = sum((t - mt) * (v - mv) for t, v in inside) / var
    residual = sum((v - mv - slope * (t - mt)) ** 2 for t, v in inside) / (n - 2)
    if math.sqrt(residual / var) * (end - start) > MAX_ERROR:
        return None
    return slope * (end - start)


class ActuatorMonitor:
    """Feed commands (:meth:`on_command`), reported states (:meth:`on_state`) and, for an
    HVAC, its room's temperature (:meth:`on_room`); then ask :meth:`findings`."""

    def __init__(self, device: str, actuator: str, timing: Timing = Timing()) -> None:
        self.device, self.actuator = device, actuator
        self.name = f"{device} {actuator}"
        self.timing = timing
        self.pending: dict[str, Sent] = {}
        self.unacked = 0  # commands in a row that no state acknowledged
        self.last_unacked: Sent | None = None
        self.contradiction: tuple[Sent, str] | None = None
        self.last_command: Sent | None = None
        self.mode: Sent | None = None  # the heat/cool command in force, acknowledged
        self.fights: deque[float] = deque(maxlen=32)
        self.room: deque[tuple[float, float]] = deque(maxlen=2000)

    def on_command(self, ts: float, command_id: str, action: str, value: float | None,
                   ttl: float) -> None:
        sent = Sent(command_id, ts, action, value, ts + ttl + ACK_GRACE_S)
        self.pending[command_id] = sent
        self.last_command = sent
        while len(self.pending) > 64:
            self.pending.pop(next(iter(self.pending)))

    def on_state(self, ts: float, action: str, value: float | None, command_id: object) -> None:
        sent = self.pending.pop(command_id, None) if isinstance(command_id, str) else None
        if sent is not None:
            self.unacked = 0
            same_value = sent.value is None or value is None or abs(sent.value - value) < 0.01
            self.contradiction = None if action == sent.action and same_value else (sent, action)
            self.mode = sent if action in ("heat", "cool") and self.contradiction is None else None
            return
        last = self.last_command
        if command_id is None and last is not None and action != last.action:
            self.mode = None
            if ts - last.ts <= self.timing.fight_window:
                self.fights.append(ts)

    def on_room(self, ts: float, temperature: float) -> None:
        self.room.append((ts, temperature))

    def findings(self, now: float, room_trusted: bool = True) -> list[Finding]:
        """``room_trusted`` False: the room's thermometer is itself faulty, so no judgement of
        the HVAC's effect."""
        self._expire(now)
        out = [self._no_ack(), self._contradicts(), self._fighting(now)]
        if room_trusted:
            out.append(self._no_effect(now))
        return [f for f in out if f is not None]

    def _expire(self, now: float) -> None:
        for cid, sent in list(self.pending.items()):
            if now > sent.deadline:
                del self.pending[cid]
                self.unacked += 1
                self.last_unacked = sent

    def _no_ack(self) -> Finding | None:
        if not self.unacked or self.last_unacked is None:
            return None
        sent = self.last_unacked
        return Finding(
            "no_ack",
            1.0 if self.unacked >= 2 else 0.6,
            {"unacknowledged": self.unacked, "ttl_s": sent.deadline - sent.ts - ACK_GRACE_S},
            f"{self.name} did not report any state after the last {self.unacked} commands "
            f"(the last, {sent.action}, within its TTL).",
        )

    def _contradicts(self) -> Finding | None:
        if self.contradiction is None:
            return None
        sent, action = self.contradiction
        return Finding(
            "contradicts",
            1.0,
            {"commanded_at": sent.ts},
            f"{self.name} was told to {sent.action} and reports {action} for that very command.",
        )

    def _fighting(self, now: float) -> Finding | None:
        recent = [t for t in self.fights if now - t <= self.timing.fight_memory]
        if len(recent) < FIGHTS_SUSPECT:
            return None
        return Finding(
            "fighting",
            1.0 if len(recent) >= FIGHTS_FAULTY else 0.6,
            {"overrides": len(recent), "window_s": self.timing.fight_memory},
            f"someone changed {self.name} back by hand right after {len(recent)} of our recent "
            f"commands.",
        )

    def _no_effect(self, now: float) -> Finding | None:
        mode, span = self.mode, self.timing.effect_after
        if mode is None or mode.value is None or now - mode.ts < span:
            return None
        room = list(self.room)
        window = [v for t, v in room if now - span <= t <= now]
        sign = -1.0 if mode.action == "cool" else 1.0  # the way the room should go
        if len(window) < 3 or any(sign * (mode.value - v) < EFFECT_MARGIN for v in window):
            return None  # the setpoint is (nearly) reached: nothing to expect
        during = slope_change(room, now - span, now)
        before = slope_change(room, mode.ts - span, mode.ts)
        if during is None or before is None:
            return None
        effect = sign * (during - before)
        if effect >= MIN_EFFECT or sign * during > 0.05:
            return None
        return Finding(
            "no_effect",
            1.0,
            {"change_k": during, "change_before_k": before, "window_s": span,
             "setpoint": mode.value},
            f"{self.name} has been set to {mode.action} for {fmt(span / 60)} min, yet the room "
            f"went {fmt(during)} K (it went {fmt(before)} K before): it seems to have no effect.",
        )
