"""Every series and actuator of one agent: routes what arrives to its monitor, and says which
health changed at each check."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.diagnosis.actuators import ActuatorMonitor, Timing
from agent.diagnosis.detectors import fmt, usual_interval
from agent.diagnosis.digest import digest, features
from agent.diagnosis.engine import FAULTY_P, OK_CLASS, SUSPECT_P, DiagnoseEngine
from agent.diagnosis.series import SeriesMonitor
from agent.diagnosis.verdict import FAULTY, OK, Finding, Health, Tracker

RANGE_MARGIN = 0.01  # of the plausible range: readings just outside it are noise at a limit


def cut_off(found: dict[str, list[Finding]]) -> None:
    """Most series silent at once is the agent cut off (a broker, a network, a stall), not
    every device failing together: no series is silent then."""
    silent = [key for key, findings in found.items() if any(f.fault == "silent" for f in findings)]
    if len(silent) >= 3 and len(silent) * 2 >= len(found):
        for key in silent:
            found[key] = [f for f in found[key] if f.fault != "silent"]


def blame_drift(found: dict[str, list[Finding]], peers: dict[str, list[str]]) -> None:
    """Sensors of one room drift apart: only the one that moved farthest from the others is
    faulty; when no one stands out (two sensors), each is only a suspect."""
    for key, findings in found.items():
        mine = next((f for f in findings if f.fault == "drift"), None)
        if mine is None:
            continue
        rivals = [abs(f.evidence["offset"]) for p in peers.get(key, [])
                  for f in found.get(p, []) if f.fault == "drift"]
        if rivals and abs(mine.evidence["offset"]) < 1.5 * max(rivals):
            findings.remove(mine)
            if abs(mine.evidence["offset"]) >= max(rivals) / 1.5:
                findings.append(Finding("drift", min(mine.score, 0.6), mine.evidence,
                                        mine.explanation.replace("has drifted", "or a sensor "
                                                                 "beside it has drifted")))


@dataclass(frozen=True, slots=True)
class Layout:
    """Which devices measure the same room (drift references), and which temperature series
    tells whether an HVAC works (``device/actuator`` -> ``device/quantity``)."""

    rooms: Mapping[str, list[str]] = field(default_factory=dict)
    hvac_rooms: Mapping[str, str] = field(default_factory=dict)
    timing: Timing = field(default_factory=Timing)
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # per quantity

    def room_of(self, device: str) -> list[str]:
        return next((devs for devs in self.rooms.values() if device in devs), [])


@dataclass(frozen=True, slots=True)
class Change:
    """A health that changed at a check: ``kind`` is "sensor" (``key`` device/quantity) or
    "actuator" (``key`` device/actuator)."""

    kind: str
    key: str
    health: Health
    previous: Health


class Diagnoser:
    """Not thread-safe: the caller holds one lock around every call."""

    def __init__(self, layout: Layout = Layout(), start: float = 0.0) -> None:
        self.layout = layout
        self.start = start
        self.series: dict[str, SeriesMonitor] = {}
        self.actuators: dict[str, ActuatorMonitor] = {}
        self.trackers: dict[tuple[str, str], Tracker] = {}
        self.engines: dict[str, DiagnoseEngine] = {}  # per quantity, where the gate picked one
        self.dismissed: dict[str, str] = {}  # series -> the fault a person said it does not have
        self.digests: dict[str, str] = {}  # series -> its digest at the last check
        self.found: dict[str, list[Finding]] = {}  # series -> its findings at the last check

    # -- what arrives -------------------------------------------------------------------------

    def _series(self, device: str, quantity: str) -> SeriesMonitor:
        key = f"{device}/{quantity}"
        monitor = self.series.get(key)
        if monitor is None:
            monitor = self.series[key] = SeriesMonitor(device, quantity)
            monitor.resting.update(self.layout.bounds.get(quantity, ()))  # saturated, not stuck
        return monitor

    def _actuator(self, device: str, actuator: str) -> ActuatorMonitor:
        key = f"{device}/{actuator}"
        monitor = self.actuators.get(key)
        if monitor is None:
            monitor = self.actuators[key] = ActuatorMonitor(device, actuator, self.layout.timing)
        return monitor

    def reading(self, device: str, quantity: str, ts: float, value: float,
                in_range: bool = True) -> None:
        monitor = self._series(device, quantity)
        bounds = self.layout.bounds.get(quantity)
        if not in_range and bounds is not None:  # a humid 100.3 %: noise at a limit, no glitch
            margin = RANGE_MARGIN * (bounds[1] - bounds[0])
            in_range = bounds[0] - margin <= value <= bounds[1] + margin
        monitor.observe(ts, value, in_range)
        if not in_range:
            return
        reference = self._reference_value(device, quantity, ts)
        if reference is not None:
            monitor.observe_reference(value - reference)
        for act, series in self.layout.hvac_rooms.items():
            if series == f"{device}/{quantity}":
                self._actuator(*act.split("/", 1)).on_room(ts, value)

    def seen(self, device: str, quantity: str, ts: float) -> None:
        self._series(device, quantity).seen(ts)

    def command(self, device: str, actuator: str, ts: float, command_id: str, action: str,
                value: float | None, ttl: float) -> None:
        self._actuator(device, actuator).on_command(ts, command_id, action, value, ttl)

    def state(self, device: str, actuator: str, ts: float, action: str, value: float | None,
              command_id: object) -> None:
        self._actuator(device, actuator).on_state(ts, action, value, command_id)

    @staticmethod
    def _fresh(reference: SeriesMonitor, ts: float) -> bool:
        """Whether the reference's last reading is recent enough to compare with one at ``ts``."""
        interval = usual_interval(reference.times)
        return interval is not None and abs(ts - reference.times[-1]) <= 2 * interval

    def _peers(self, device: str, quantity: str) -> list[SeriesMonitor]:
        """The room's other series of the same quantity."""
        return [self.series[f"{other}/{quantity}"] for other in self.layout.room_of(device)
                if other != device and f"{other}/{quantity}" in self.series]

    def _reference_value(self, device: str, quantity: str, ts: float) -> float | None:
        """The median of the room's other healthy sensors of the quantity, read just now."""
        values = [
            m.values[-1] for m in self._peers(device, quantity)
            if m.values and self._fresh(m, ts) and self._state("sensor", f"{m.device}/{quantity}")
            == OK
        ]
        return statistics.median(values) if values else None

    def _state(self, kind: str, key: str) -> str:
        health = self.health(kind, key)
        return OK if health is None else health.state

    # -- judging ------------------------------------------------------------------------------

    def check(self, now: float) -> list[Change]:
        found = {key: self._findings(key, monitor, now) for key, monitor in self.series.items()}
        cut_off(found)
        blame_drift(found, {key: [f"{m.device}/{m.quantity}" for m in
                                  self._peers(monitor.device, monitor.quantity)]
                            for key, monitor in self.series.items()})
        self.found = found
        changes: list[Change] = []
        for key, findings in found.items():
            changes.extend(self._track("sensor", key, self.series[key].name, now, findings))
        for key, act in self.actuators.items():
            room = self.layout.hvac_rooms.get(key)
            trusted = room is None or self._state("sensor", room) == OK
            changes.extend(self._track("actuator", key, act.name, now,
                                       act.findings(now, trusted)))
        return changes

    def _findings(self, key: str, monitor: SeriesMonitor, now: float) -> list[Finding]:
        run_start = monitor.run_start
        others = [m for k, m in self.series.items()
                  if m.device == monitor.device and k != key and m.values]
        moved = None if not others or run_start is None else sum(
            m.changes_since(run_start) for m in others)
        peers = self._peers(monitor.device, monitor.quantity)
        names = " and ".join(m.name for m in peers) or "the room's other sensors"
        found = monitor.findings(now, moved, names)
        text = self.digests[key] = digest(features(monitor, now))
        engine = self.engines.get(monitor.quantity)
        if engine is not None:
            found = self._model_findings(engine, key, monitor, text, now, found)
        return self._undismissed(key, found)

    def _model_findings(self, engine: DiagnoseEngine, key: str, monitor: SeriesMonitor,
                        text: str, now: float, found: list[Finding]) -> list[Finding]:
        """The model's verdict on the digest instead of the detectors' on the fault kinds the
        engine judges; the detectors' findings while the digest is not embedded yet."""
        urgent = any(f.score >= 0.5 for f in found)
        verdict = engine.classify(key, text, now, urgent)
        if verdict is None:
            return found
        fault, p = verdict
        kept = [f for f in found if f.fault not in engine.kinds]
        if fault == OK_CLASS or fault not in engine.kinds or p < SUSPECT_P:
            return kept
        same = next((f for f in found if f.fault == fault), None)
        evidence = dict(same.evidence) if same is not None else {}
        if fault == "drift" and "offset" not in evidence:
            ratio = features(monitor, now).drift_ratio or 0.0
            evidence["offset"] = ratio * (monitor.limits.drift_tolerance or 1.0)
        evidence["model_p"] = p
        explanation = same.explanation if same is not None else (
            f"{monitor.name} looks {fault.replace('_', ' ')} to the diagnose model "
            f"({fmt(100 * p)}%): {text}")
        score = 1.0 if p >= FAULTY_P else 0.6
        return [*kept, Finding(fault, score, evidence, explanation,
                               None if same is None else same.started)]

    def _undismissed(self, key: str, found: list[Finding]) -> list[Finding]:
        """Without the fault a person dismissed; the dismissal ends when that fault does."""
        fault = self.dismissed.get(key)
        if fault is None:
            return found
        if not any(f.fault == fault for f in found):
            del self.dismissed[key]
            return found
        return [f for f in found if f.fault != fault]

    def dismiss(self, key: str, now: float) -> Health | None:
        """A person says series ``key`` is fine: its fault is dropped until it goes away by
        itself, and the series is ok at once. The health it had (None if it had none)."""
        tracker = self.trackers.get(("sensor", key))
        if tracker is None:
            return None
        previous = tracker.health
        if previous.fault is not None:
            self.dismissed[key] = previous.fault
        tracker.reset(now)
        return previous

    def _track(
        self, kind: str, key: str, name: str, now: float, findings: list[Finding]
    ) -> list[Change]:
        tracker = self.trackers.get((kind, key))
        if tracker is None:
            tracker = self.trackers[(kind, key)] = Tracker(name, now)
        previous = tracker.health
        fresh = tracker.update(now, findings)
        return [] if fresh is None else [Change(kind, key, fresh, previous)]

    def health(self, kind: str, key: str) -> Health | None:
        tracker = self.trackers.get((kind, key))
        return None if tracker is None else tracker.health

    def faulty(self, key: str) -> Health | None:
        """The health of sensor series ``device/quantity`` if it is faulty."""
        health = self.health("sensor", key)
        return health if health is not None and health.state == FAULTY else None
