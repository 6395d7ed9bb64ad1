"""The agent's side of fault diagnosis: feeds the diagnoser what arrives, publishes the health
topics and fault events, and tells the decisions which policies must hold off.

Topics (SPEC extension): retained ``{p}/agents/{id}/health/{device}/{quantity}`` and
``{p}/agents/{id}/health/actuators/{device}/{actuator}`` carry {state, fault, since, confidence,
evidence, explanation, ts}; every change is also an event on ``{p}/agents/{id}/faults``, as is
every policy that pauses or resumes because of one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent.config import Config, PolicyConfig
from agent.diagnosis import answers
from agent.diagnosis.actuators import Timing
from agent.diagnosis.engine import SENSOR_FAULTS, DiagnoseEngine, Vector
from agent.diagnosis.fleet import Change, Diagnoser, Layout
from agent.diagnosis.intake import Measured, canonical, measured, state_of
from agent.diagnosis.verdict import FAULTY, OK, Health
from agent.mqtt import Message
from agent.policy.signing import parse_command, verify
from agent.service.homeassistant import safe_id

if TYPE_CHECKING:
    from agent.service.ingest import Arrival

log = logging.getLogger(__name__)


def dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def layout_of(config: Config) -> Layout:
    """Rooms from ``diagnosis.rooms``; each HVAC's room thermometer from the policies' targets."""
    hvac: dict[str, str] = {}
    for policy in config.policies:
        temperature = next((k for k in policy.targets if k.endswith("/temperature")), None)
        for act in policy.actuators:
            if temperature is not None and {"heat", "cool"} & set(act.actions):
                hvac.setdefault(act.key, temperature)
    d = config.diagnosis
    bounds = {q: s.range for q, s in config.sensors.items() if s.range is not None}
    return Layout(dict(d.rooms), hvac, Timing(d.effect_after, d.fight_window, d.fight_memory),
                  bounds)


def safe_action(config: Config, policy: PolicyConfig) -> str:
    """What a paused policy's actuator is set to: configured, else ``off`` if it has it, else
    ``hold`` (nothing is sent)."""
    configured = config.diagnosis.safe_actions.get(policy.name)
    if configured is not None:
        return configured
    return "off" if "off" in policy.actuators[0].actions else "hold"


def problem_sensor(config: Config, agent_id: str, health_topic: str, kind: str,
                   key: str) -> tuple[str, dict[str, Any]]:
    """A Home Assistant ``problem`` binary sensor on a health topic (on while faulty), with
    the fault, since and explanation as attributes."""
    node = safe_id(agent_id)
    object_id = safe_id(f"health_{key.replace('/', '_')}")
    device = key.split("/")[0]
    payload = {
        "unique_id": f"edge-agent_{node}_{object_id}",
        "name": f"{key.split('/')[1]} problem",
        "device": {"identifiers": [f"edge-agent_{node}_{safe_id(device)}"], "name": device,
                   "via_device": f"edge-agent_{node}"},
        "device_class": "problem",
        "entity_category": "diagnostic",
        "state_topic": health_topic,
        "value_template": "{{ 'ON' if value_json.state == 'faulty' else 'OFF' }}",
        "json_attributes_topic": health_topic,
        "json_attributes_template": "{{ {'state': value_json.state, 'fault': value_json.fault, "
                                    "'since': value_json.since, 'explanation': "
                                    "value_json.explanation} | tojson }}",
        "origin": {"name": "edge-agent"},
    }
    topic = f"{config.homeassistant.prefix}/binary_sensor/{node}/{object_id}/config"
    return topic, payload


class HealthService:
    def __init__(
        self,
        config: Config,
        agent_id: str,
        *,
        publish: Callable[..., Any],
        key: bytes | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.agent_id = agent_id
        self.prefix = config.mqtt.prefix
        self.enabled = config.diagnosis.enabled
        self.publish = publish
        self.key = key
        self.clock = clock
        self.base = f"{self.prefix}/agents/{agent_id}/health"
        self.topic_faults = f"{self.prefix}/agents/{agent_id}/faults"
        self.diagnoser = Diagnoser(layout_of(config), clock())
        self.lock = threading.Lock()
        self.announced: set[tuple[str, str]] = set()
        self.paused: dict[str, str] = {}  # policy -> the faulty input it waits for
        self.dropped = 0  # command messages that failed their signature
        # what the wire may make us track is bounded like the series ingest keeps (attack 6):
        # configured actuators only, and no more series than sensors.max_series* allow
        self.actuator_keys = {a.key for p in config.policies for a in p.actuators}
        self.per_device: dict[str, int] = {}
        self.ignored = 0  # readings and states of series or actuators not tracked
        # the diagnose engines' gate per quantity (agent.service.diagnosing fills it in)
        self.gates: dict[str, dict[str, Any]] = {}
        self.store_label: Callable[[dict[str, Any]], None] | None = None

    def reconfigure(self, config: Config) -> None:
        """A reload's new diagnosis settings, rooms and actuators; what has been learnt about
        each series (its history, its health) is kept."""
        with self.lock:
            self.config = config
            self.enabled = config.diagnosis.enabled
            self.diagnoser.layout = layout_of(config)
            self.actuator_keys = {a.key for p in config.policies for a in p.actuators}
            for monitor in self.diagnoser.actuators.values():
                monitor.timing = self.diagnoser.layout.timing

    def lookup(self, key: str) -> tuple[str, str | None] | None:
        """(state, fault) of sensor series or actuator ``key`` (``device/name``), if tracked;
        for interlocks that name a fault. Nothing while diagnosis is off."""
        if not self.enabled:
            return None
        with self.lock:
            health = (self.diagnoser.health("sensor", key)
                      or self.diagnoser.health("actuator", key))
        return None if health is None else (health.state, health.fault)

    def filters(self) -> list[str]:
        """Our own commands, to see whether each actuator answers them."""
        watch = self.config.policies and self.config.security.command_key_file is not None
        return [f"{self.prefix}/actuators/+/+/set"] if self.enabled and watch else []

    # -- what arrives (the MQTT thread) ------------------------------------------------------

    def observe(self, msg: Message) -> bool:
        """Look at any message; True if it was a command, which is for diagnosis only."""
        if not self.enabled:
            return False
        try:
            return self._observe(msg)
        except Exception:  # diagnosis must never stop a message: logged, dropped
            log.exception("diagnosis could not read a message on %s", msg.topic)
            return msg.topic.endswith("/set")

    def _observe(self, msg: Message) -> bool:
        parts = msg.topic.split("/")
        if msg.topic.startswith(f"{self.prefix}/sensors/"):
            self._reading(msg)
        elif len(parts) == 5 and parts[1] == "actuators" and parts[4] == "state":
            if f"{parts[2]}/{parts[3]}" not in self.actuator_keys:
                self.ignored += 1
                return False
            state = state_of(msg.payload)
            if state is not None:
                with self.lock:
                    self.diagnoser.state(parts[2], parts[3], self.clock(), *state)
        elif len(parts) == 5 and parts[1] == "actuators" and parts[4] == "set":
            if f"{parts[2]}/{parts[3]}" in self.actuator_keys:
                self._command(parts[2], parts[3], msg.payload)
            return True
        return False

    def _reading(self, msg: Message) -> None:
        cfg = self.config
        got = measured(msg.topic, msg.payload, msg.recv_ts, prefix=self.prefix,
                       max_bytes=cfg.mqtt.max_payload_bytes, sensors=cfg.sensors.kinds)
        if got is None:
            return
        device, quantity = (got.device, got.quantity) if isinstance(got, Measured) else got
        with self.lock:
            if not self._admit(device, quantity):
                self.ignored += 1
                return
            if isinstance(got, Measured):
                self.diagnoser.reading(got.device, got.quantity, msg.recv_ts, got.value,
                                       got.in_range)
            else:
                self.diagnoser.seen(device, quantity, msg.recv_ts)

    def arrivals(self, batch: list[Arrival]) -> None:
        """The sensor messages of one ingest batch, already parsed and converted by ingest (on
        the ingest thread, after the commit): none is parsed a second time."""
        if not self.enabled:
            return
        try:
            with self.lock:
                for arrival in batch:
                    self._arrival(arrival)
        except Exception:  # diagnosis must never stop ingestion: logged, dropped
            log.exception("diagnosis could not take a batch of %d readings", len(batch))

    def _arrival(self, a: Arrival) -> None:
        if not self._admit(a.device, a.quantity):
            self.ignored += 1
        elif a.value is not None:  # stored (or within the deadband): converted and in range
            self.diagnoser.reading(a.device, a.quantity, a.recv_ts, a.value, True)
        else:
            got = None if a.reading is None else canonical(a.reading, self.config.sensors.kinds)
            if isinstance(got, Measured):
                self.diagnoser.reading(a.device, a.quantity, a.recv_ts, got.value, got.in_range)
            else:  # unusable, but the device is not silent
                self.diagnoser.seen(a.device, a.quantity, a.recv_ts)

    def _admit(self, device: str, quantity: str) -> bool:
        """Track this series? Already tracked, or within the limits ingest applies."""
        if f"{device}/{quantity}" in self.diagnoser.series:
            return True
        sensors = self.config.sensors
        if sensors.strict and quantity not in sensors.kinds:
            return False
        count = self.per_device.get(device, 0)
        if count >= sensors.max_series_per_device or (
                len(self.diagnoser.series) >= sensors.max_series):
            return False
        self.per_device[device] = count + 1
        return True

    def _command(self, device: str, actuator: str, payload: bytes) -> None:
        command = parse_command(payload)
        if command is None or self.key is None or not verify(command, self.key):
            self.dropped += 1
            return
        ts, expires = command.get("ts"), command.get("expires")
        if not isinstance(ts, (int, float)) or not isinstance(expires, (int, float)):
            return
        value = command.get("value")
        with self.lock:
            self.diagnoser.command(device, actuator, self.clock(), str(command["id"]),
                                   str(command["action"]),
                                   float(value) if isinstance(value, (int, float)) else None,
                                   float(expires) - float(ts))

    # -- judging (the scheduler) ---------------------------------------------------------------

    def tick(self) -> list[Change]:
        if not self.enabled:
            return []
        now = self.clock()
        with self.lock:
            changes = self.diagnoser.check(now)
            fresh = [(kind, key, tracker.health)
                     for (kind, key), tracker in self.diagnoser.trackers.items()
                     if (kind, key) not in self.announced]
            self.announced.update((kind, key) for kind, key, _ in fresh)
        for kind, key, health in fresh:
            self._retain(kind, key, health, now)
            if self.config.homeassistant.discovery:
                topic, payload = problem_sensor(self.config, self.agent_id, self.topic(kind, key),
                                                kind, key)
                self.publish(topic, dumps(payload), qos=1, retain=True)
        for change in changes:
            self._retain(change.kind, change.key, change.health, now)
            self._event(change, now)
        return changes

    def topic(self, kind: str, key: str) -> str:
        return f"{self.base}/{key}" if kind == "sensor" else f"{self.base}/actuators/{key}"

    def engine_of(self, kind: str, key: str, fault: str | None = None) -> str:
        """Which engine judges this series' ``fault``: "model" where the gate gave that fault
        kind of its quantity to the diagnose engine, else "statistical" (actuators always);
        for a healthy series, "model" if the engine judges any kind of it."""
        engine = self.diagnoser.engines.get(key.split("/")[-1]) if kind == "sensor" else None
        if engine is None or (fault is not None and fault not in engine.kinds):
            return "statistical"
        return "model"

    def _retain(self, kind: str, key: str, health: Health, now: float) -> None:
        body = {**health.message(), "engine": self.engine_of(kind, key, health.fault),
                "ts": round(now, 3)}
        self.publish(self.topic(kind, key), dumps(body), qos=1, retain=True)

    def _event(self, change: Change, now: float) -> None:
        h = change.health
        level = logging.WARNING if h.state == FAULTY else logging.INFO
        log.log(level, "health %s %s: %s", change.kind, change.key, h.explanation)
        event = {"ts": round(now, 3), "kind": change.kind, "key": change.key,
                 "previous": change.previous.state, **h.message()}
        self.publish(self.topic_faults, dumps(event), qos=1)

    # -- what the decisions ask ----------------------------------------------------------------

    def hold(self, policy: PolicyConfig) -> tuple[str, Health] | None:
        """The first faulty input of ``policy`` and its health, if the policy must pause."""
        if not (self.enabled and self.config.diagnosis.pause):
            return None
        with self.lock:
            for key in policy.inputs:
                health = self.diagnoser.faulty(key)
                if health is not None and health.fault in self.config.diagnosis.pause_on:
                    return key, health
        return None

    def inputs(self, policy: PolicyConfig) -> dict[str, str]:
        """The state of each of ``policy``'s inputs the diagnosis tracks, for its results."""
        if not self.enabled:
            return {}
        with self.lock:
            healths = {key: self.diagnoser.health("sensor", key) for key in policy.inputs}
        return {key: h.state for key, h in healths.items() if h is not None}

    def pause_changed(self, policy: PolicyConfig, why: tuple[str, Health] | None,
                      action: str) -> bool:
        """Record whether ``policy`` is paused; True (and an event) when that changed."""
        now = self.clock()
        was = self.paused.get(policy.name)
        if why is None:
            if was is None:
                return False
            del self.paused[policy.name]
            text = f"policy {policy.name} resumes: {was} is healthy again."
            event = {"ts": now, "kind": "policy", "key": policy.name, "state": "resumed",
                     "input": was, "explanation": text}
        else:
            key, health = why
            if was == key:
                return False
            self.paused[policy.name] = key
            text = (f"policy {policy.name} is paused: {health.explanation} "
                    f"Its actuator goes to {action}.")
            event = {"ts": now, "kind": "policy", "key": policy.name, "state": "paused",
                     "input": key, "fault": health.fault, "action": action,
                     "explanation": text}
        log.warning("%s", text)
        self.publish(self.topic_faults, dumps(event), qos=1)
        return True

    def problems(self) -> list[tuple[str, str, Health]]:
        """Every series and actuator that is not ok: (kind, key, health), by key."""
        with self.lock:
            found = [(kind, key, t.health) for (kind, key), t in self.diagnoser.trackers.items()
                     if t.health.state != "ok"]
        return sorted(found, key=lambda row: row[1])

    def gauges(self) -> tuple[dict[tuple[str, str], tuple[str, str | None]], dict[str, str]]:
        """For the metrics endpoint: every health as (state, fault); the paused policies."""
        with self.lock:
            states = {k: (t.health.state, t.health.fault)
                      for k, t in self.diagnoser.trackers.items()}
        return states, dict(self.paused)

    def status(self) -> dict[str, Any]:
        with self.lock:
            unhealthy = {f"{kind}:{key}": {"state": t.health.state, "fault": t.health.fault}
                         for (kind, key), t in self.diagnoser.trackers.items()
                         if t.health.state != "ok"}
            quantities = sorted({m.quantity for m in self.diagnoser.series.values()}
                                | set(self.gates))
            engines = {q: {fault: self.engine_of("sensor", q, fault) for fault in SENSOR_FAULTS}
                       for q in quantities}
        return {"unhealthy": unhealthy, "paused": dict(self.paused), "engines": engines,
                "gates": dict(self.gates)}

    # -- the diagnose engines (agent.service.diagnosing) ---------------------------------------

    def install(self, engines: dict[str, DiagnoseEngine], gates: dict[str, dict[str, Any]]
                ) -> None:
        with self.lock:
            self.diagnoser.engines = dict(engines)
            self.gates = dict(gates)

    def fill(self, embed: Callable[[str], Vector]) -> int:
        """Embed the digests the engines want (without the lock: embedding is slow)."""
        with self.lock:
            wanted = {q: list(e.wanted) for q, e in self.diagnoser.engines.items()}
            for e in self.diagnoser.engines.values():
                e.wanted.clear()
        done = 0
        for quantity, texts in wanted.items():
            for text in texts[:8]:
                vector = embed(text)
                with self.lock:
                    engine = self.diagnoser.engines.get(quantity)
                    if engine is not None:
                        engine.learn(text, vector)
                done += 1
        return done

    # -- people's answers ----------------------------------------------------------------------

    def answer(self, request_id: object, text: str) -> dict[str, Any] | None:
        """A reply (SPEC 7's shape, with ``diagnosis``) when ``text`` confirms or dismisses a
        sensor's fault; None when it is no answer about a sensor."""
        if not self.enabled:
            return None
        origin = "cli" if str(request_id).startswith("cli-") else "intent"
        with self.lock:
            unhealthy = {k: t.health.fault or "" for (kind, k), t in self.diagnoser.trackers.items()
                         if kind == "sensor" and t.health.state != OK}
            parsed = answers.parse(text, list(self.diagnoser.series), unhealthy)
        if parsed is None:
            return None
        if isinstance(parsed, answers.Unclear):
            return {"id": request_id, "ok": False, "command": None, "error": parsed.reason}
        return self._answered(request_id, parsed, origin)

    def label(self, kind: str, key: str, label: str) -> dict[str, Any]:
        """A person's confirm or dismiss of sensor series ``key`` from the dashboard: the same
        answer as the intents topic or `edge-agent health confirm|dismiss` gives (a label in
        the database, a dismissed alarm cleared)."""
        if kind != "sensor" or label not in ("confirm", "dismiss"):
            return {"ok": False, "error": "only a sensor's fault can be confirmed or dismissed"}
        if not self.enabled:
            return {"ok": False, "error": "diagnosis is off"}
        with self.lock:
            known = ("sensor", key) in self.diagnoser.trackers
        if not known:
            return {"ok": False, "error": f"{key} is no series this agent diagnoses"}
        verdict = answers.CONFIRMED if label == "confirm" else answers.DISMISSED
        return self._answered(f"web-{key}", answers.Answer(verdict, key), "web")

    def _answered(self, request_id: object, parsed: answers.Answer, origin: str
                  ) -> dict[str, Any]:
        now = self.clock()
        key = parsed.key
        with self.lock:
            tracker = self.diagnoser.trackers.get(("sensor", key))
            health = None if tracker is None else tracker.health
            digest = self.diagnoser.digests.get(key, "")
            if health is None or (parsed.verdict == answers.CONFIRMED and health.state == OK):
                name = key.replace("/", " ")
                return {"id": request_id, "ok": False, "command": None,
                        "error": f"{name} looks healthy to me: there is no fault to confirm"}
            if parsed.verdict == answers.DISMISSED:
                self.diagnoser.dismiss(key, now)
                fresh = self.diagnoser.trackers[("sensor", key)].health
        label = health.fault or OK if parsed.verdict == answers.CONFIRMED else OK
        device, quantity = key.split("/", 1)
        row = {"ts": now, "device": device, "quantity": quantity, "verdict": parsed.verdict,
               "fault": health.fault, "label": label, "digest": digest, "origin": origin}
        if self.store_label is not None:
            self.store_label(row)
        text = (f"{key.replace('/', ' ')}: {health.fault or 'no fault'} {parsed.verdict}"
                + (", the alarm is cleared." if parsed.verdict == answers.DISMISSED else "."))
        if parsed.verdict == answers.DISMISSED:
            self._retain("sensor", key, fresh, now)
            self.publish(self.topic_faults, dumps(
                {"ts": round(now, 3), "kind": "sensor", "key": key, "previous": health.state,
                 **fresh.message(), "dismissed": health.fault}), qos=1)
        log.info("health %s: %s", key, text)
        return {"id": request_id, "ok": True, "command": None, "error": None,
                "diagnosis": {"device": device, "quantity": quantity,
                              "verdict": parsed.verdict, "fault": health.fault,
                              "label": label, "explanation": text}}
