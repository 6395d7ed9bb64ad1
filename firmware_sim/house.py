"""A simulated home on a broker: rooms with physics, sensors with faults, signed actuators.

One paho client (MQTT 5) carries every device. A background thread advances the physics in
fixed ticks of simulated time, ``speed`` times faster than real time, and publishes what the
sensors read. Readings carry ``ts`` = the real wall-clock time (the agent judges timestamps by
its own clock); only the physics runs fast. Without commands a run repeats exactly: the
physics is deterministic and every sensor draws from its own seeded generator.

:meth:`House.tick` does one step without any I/O, so tests and tools can drive a house by hand.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.errors import BrokerError
from firmware_sim.actuators import Actuator, State
from firmware_sim.faults import broken
from firmware_sim.physics import Room, World
from firmware_sim.scenario import (
    UNITS,
    Event,
    Faults,
    Quantity,
    Scenario,
    SensorModel,
    scenario_from,
)
from firmware_sim.sensors import SensorSim

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 3600  # the broker keeps our subscriptions and queued commands that long


class Sample(NamedTuple):
    """A room's temperature at simulated time ``t`` (seconds since the start)."""

    t: float
    room: str
    temperature: float


class Applied(NamedTuple):
    """A state change at ``t``: a command (with its id) or a person (``command_id`` None)."""

    t: float
    device: str
    actuator: str
    action: str
    value: float | None
    command_id: str | None


class Rejection(NamedTuple):
    t: float
    device: str
    actuator: str
    reason: str


class Message(NamedTuple):
    topic: str
    payload: bytes
    retain: bool = False


@dataclass(frozen=True, slots=True)
class RoomSnapshot:
    name: str
    temperature: float
    humidity: float
    co2: float
    lux: float
    people: int
    target: tuple[float, float] | None
    hvac: State | None  # the room's first HVAC, if it has one
    in_band_s: float  # simulated seconds inside ``target`` so far
    tracked_s: float  # simulated seconds measured against ``target`` (0 without a target)
    min_temperature: float
    max_temperature: float

    @property
    def in_band(self) -> bool | None:
        if self.target is None:
            return None
        return self.target[0] <= self.temperature <= self.target[1]

    @property
    def in_band_fraction(self) -> float | None:
        return self.in_band_s / self.tracked_s if self.tracked_s else None


@dataclass(frozen=True, slots=True)
class ActuatorSnapshot:
    device: str
    actuator: str
    room: str
    state: State
    accepted: int
    rejected: dict[str, int]  # reason -> count


@dataclass(frozen=True, slots=True)
class Snapshot:
    sim_time: float  # simulated seconds since the start
    start_hour: float  # time of day when the run started
    outside: float
    rooms: dict[str, RoomSnapshot]
    actuators: dict[str, ActuatorSnapshot]  # by "device/actuator"
    published: int  # sensor messages handed to the broker
    connected: bool

    @property
    def hour(self) -> float:
        """Time of day in the simulation, in hours."""
        return (self.start_hour + self.sim_time / 3600) % 24

    @property
    def clock(self) -> str:
        """``"day 1 07:30"``."""
        day, minutes = divmod(int(self.sim_time // 60 + round(self.start_hour * 60)), 1440)
        return f"day {day + 1} {minutes // 60:02d}:{minutes % 60:02d}"

    @property
    def accepted(self) -> int:
        return sum(a.accepted for a in self.actuators.values())

    @property
    def rejected(self) -> int:
        return sum(sum(a.rejected.values()) for a in self.actuators.values())


@dataclass(slots=True)
class _Sensor:
    room: str
    quantity: str
    sim: SensorSim
    every: int  # ticks between readings
    phase: int  # so that sensors with the same rate do not all speak in the same tick


@dataclass(slots=True)
class _Band:
    inside: float = 0.0
    tracked: float = 0.0
    low: float = math.inf
    high: float = -math.inf


def reading(room: Room, quantity: str) -> float:
    """The true value a sensor of ``quantity`` sees in ``room``."""
    if quantity == "temperature":
        return room.temperature
    if quantity == "humidity":
        return room.humidity
    if quantity == "light":
        return room.lux
    if quantity == "co2":
        return room.co2
    if quantity == "motion":
        return room.motion
    return room.power_w


def _sensor_sim(model: SensorModel, quantity: Quantity, seed: int, prefix: str) -> SensorSim:
    f = model.faults.get(quantity, Faults())
    return SensorSim(
        model.device,
        quantity,
        0.0,
        noise=f.noise,
        spike_prob=f.spikes,
        spike_size=f.spike_size,
        fahrenheit=f.fahrenheit,
        unit=UNITS[quantity],
        bare_prob=f.bare,
        duplicate_prob=f.duplicates,
        malformed_prob=f.malformed,
        dropout_prob=f.dropouts,
        offline=tuple(w.span for w in f.offline),
        stuck=f.stuck.span if f.stuck else None,
        drift_start=f.drift.at if f.drift else None,
        drift_per_hour=f.drift.per_hour if f.drift else 0.0,
        late=tuple(x.fault() for x in f.late),
        seed=seed,
        prefix=prefix,
    )


class House:
    """A scenario's home, on the broker at ``broker_host:broker_port`` once :meth:`start`-ed.

    ``key`` is the shared command key (SPEC 4); ``speed`` is simulated seconds per real
    second; ``seed`` overrides the scenario's; ``wall_clock`` stamps readings, states and
    judges command expiry; ``state_dir`` keeps the actuators' nonce memory across restarts
    (without it, an actuator refuses commands made before it started).
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        key: bytes,
        broker_host: str = "127.0.0.1",
        broker_port: int = 1883,
        prefix: str = "edge",
        speed: float = 60.0,
        seed: int | None = None,
        wall_clock: Callable[[], float] = time.time,
        state_dir: Path | None = None,
    ) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number, got {speed}")
        self.scenario = scenario
        self.broker_host, self.broker_port, self.prefix = broker_host, broker_port, prefix
        self.speed = speed
        self.seed = scenario.seed if seed is None else seed
        self.wall_clock = wall_clock
        self.tick_s = scenario.tick
        self.world = self._build_world()
        self.actuators: dict[str, Actuator] = {}
        self.room_of: dict[str, str] = {}  # "device/actuator" -> room
        for room, spec in scenario.actuator_specs().values():
            controls = self.world.rooms[room].controls
            act = Actuator(spec, key, prefix=prefix, controls=controls, clock=wall_clock,
                           state_dir=state_dir)
            self.actuators[spec.key] = act
            self.room_of[spec.key] = room
        self._by_topic = {a.topic_set: a for a in self.actuators.values()}
        self._faults = sorted(scenario.actuator_faults().items(), key=lambda kv: kv[1].at)
        self._sensors = self._build_sensors()
        self._events: deque[Event] = deque(sorted(scenario.events, key=lambda e: e.at))
        self._record_every = max(1, round(scenario.record_every / self.tick_s))
        self._bands = {name: _Band() for name in self.world.rooms}
        #: (start, end) in simulated seconds: when a demo or test should cut the broker
        self.outages: list[tuple[float, float]] = [w.span for w in scenario.outages]
        #: the recorder: temperatures for the chart, state changes, refused commands
        self.series: list[Sample] = []
        self.commands: list[Applied] = []
        self.rejections: list[Rejection] = []
        self.published = 0
        self.ticks = 0
        self.lock = threading.RLock()
        self._progress = threading.Condition()
        self._stop = threading.Event()
        self._connack = threading.Event()
        self._refused: str | None = None
        self._connected = False
        self._client: paho.Client | None = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None  # what ended the simulation thread, if anything
        self._record()

    @classmethod
    def from_scenario(
        cls,
        source: str | Path | Mapping[str, Any] | Scenario,
        broker_host: str = "127.0.0.1",
        broker_port: int = 1883,
        *,
        key: bytes,
        prefix: str = "edge",
        speed: float = 60.0,
        seed: int | None = None,
        wall_clock: Callable[[], float] = time.time,
        state_dir: Path | None = None,
    ) -> House:
        """A house from a scenario file, a bare bundled name (``"heatwave"``), or a mapping;
        raises :class:`~firmware_sim.scenario.ScenarioError` listing every problem."""
        return cls(
            scenario_from(source),
            key=key,
            broker_host=broker_host,
            broker_port=broker_port,
            prefix=prefix,
            speed=speed,
            seed=seed,
            wall_clock=wall_clock,
            state_dir=state_dir,
        )

    def _build_world(self) -> World:
        sc = self.scenario
        rooms = {
            name: Room.create(
                name,
                r.physics,
                sc.weather,
                hour=sc.start,
                temperature=r.temperature,
                humidity=r.humidity,
                co2=r.co2,
            )
            for name, r in sc.rooms.items()
        }
        return World(sc.weather, rooms, sc.start)

    def _build_sensors(self) -> list[_Sensor]:
        out: list[_Sensor] = []
        for name, room in self.scenario.rooms.items():
            for model in room.sensors:
                every = max(1, round(model.every / self.tick_s))
                for quantity in model.quantities:
                    sim = _sensor_sim(model, quantity, self.seed, self.prefix)
                    out.append(_Sensor(name, quantity, sim, every, len(out) % every))
        return out

    # -- simulated time ---------------------------------------------------------------------

    @property
    def sim_time(self) -> float:
        return self.world.t

    def in_outage(self, t: float | None = None) -> bool:
        """Whether simulated time ``t`` (now by default) falls in a scheduled broker outage."""
        t = self.world.t if t is None else t
        return any(start <= t < end for start, end in self.outages)

    def tick(self) -> list[Message]:
        """Advance one tick; the messages that are due (readings, states a person changed)."""
        with self.lock:
            self.world.step(self.tick_s)
            self.ticks += 1
            out = self._break_actuators()
            out.extend(self._due_events())
            self._account()
            if self.ticks % self._record_every == 0:
                self._record()
            out.extend(self._readings())
        return out

    def _break_actuators(self) -> list[Message]:
        """Faults that set in now; a stuck actuator reports where it stuck (no command)."""
        out: list[Message] = []
        while self._faults and self._faults[0][1].at <= self.world.t + 1e-9:
            key, fault = self._faults.pop(0)
            act = self.actuators[key]
            act.fault = fault
            broken(fault, act.spec.actuator, act.controls)
            log.info("%s: %s from now on", key, fault.kind)
            if fault.action is not None and fault.action != act.state.action:
                act.state = State(fault.action, None, self.wall_clock(), None)
                out.append(Message(act.topic_state, act.state_payload(), retain=True))
        return out

    def _due_events(self) -> list[Message]:
        out: list[Message] = []
        while self._events and self._events[0].at <= self.world.t + 1e-9:
            event = self._events.popleft()
            act = self.actuators[f"{event.device}/{event.actuator}"]
            act.override(event.action, event.value)
            self.commands.append(
                Applied(self.world.t, event.device, event.actuator, event.action, event.value, None)
            )
            out.append(Message(act.topic_state, act.state_payload(), retain=True))
        return out

    def _account(self) -> None:
        for name, room in self.world.rooms.items():
            band, target = self._bands[name], self.scenario.rooms[name].target
            band.low, band.high = min(band.low, room.temperature), max(band.high, room.temperature)
            if target is not None:
                band.tracked += self.tick_s
                band.inside += self.tick_s if target[0] <= room.temperature <= target[1] else 0.0

    def _record(self) -> None:
        for name, room in self.world.rooms.items():
            self.series.append(Sample(self.world.t, name, room.temperature))

    def _readings(self) -> list[Message]:
        ts, t = self.wall_clock(), self.world.t
        out: list[Message] = []
        for s in self._sensors:
            if (self.ticks + s.phase) % s.every == 0:
                value = reading(self.world.rooms[s.room], s.quantity)
                out.extend(Message(s.sim.topic, p) for p in s.sim.render(value, t, ts))
        return out

    def override(self, device: str, actuator: str, action: str, value: float | None = None) -> None:
        """A person changes an actuator now (``command_id`` null in its state)."""
        key = f"{device}/{actuator}"
        act = self.actuators.get(key)
        if act is None:
            raise KeyError(f"no actuator {key}")
        with self.lock:
            act.override(action, value)
            self.commands.append(Applied(self.world.t, device, actuator, action, value, None))
            payload = act.state_payload()
        self._publish(Message(act.topic_state, payload, retain=True))

    # -- the broker -------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> House:
        """Connect, subscribe every actuator, publish their states, start the clock.
        Raises :class:`~agent.errors.BrokerError` if the broker cannot be reached."""
        if self._client is not None:
            raise RuntimeError("this house has already been started")
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"firmware-sim-{self.scenario.name}-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv5,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(1, 5)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        where = f"{self.broker_host}:{self.broker_port}"
        try:
            client.connect(
                self.broker_host,
                self.broker_port,
                clean_start=paho.MQTT_CLEAN_START_FIRST_ONLY,
                properties=props,
            )
        except (OSError, ValueError) as exc:
            raise BrokerError(f"cannot reach the MQTT broker at {where}: {exc}") from None
        self._client = client
        client.loop_start()
        if not self._connack.wait(timeout) or self._refused:
            self._shutdown_client()
            why = self._refused or f"no answer within {timeout:g}s"
            raise BrokerError(f"the MQTT broker at {where} did not accept us: {why}")
        self._thread = threading.Thread(target=self._run, name="firmware-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the clock and disconnect (the actuators' retained states stay)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._shutdown_client()
        with self._progress:
            self._progress.notify_all()

    def _shutdown_client(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()

    def __enter__(self) -> House:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def connected(self) -> bool:
        return self._connected

    def wait(self, sim_seconds: float, timeout: float | None = None) -> bool:
        """Block until the simulation reaches ``sim_seconds``; False on timeout or stop."""
        with self._progress:
            self._progress.wait_for(
                lambda: self.world.t >= sim_seconds or self._stop.is_set(), timeout
            )
        return self.world.t >= sim_seconds

    def _run(self) -> None:
        start = time.monotonic()
        try:
            while not self._stop.is_set():
                delay = start + (self.ticks + 1) * self.tick_s / self.speed - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                for message in self.tick():
                    self._publish(message)
                with self._progress:
                    self._progress.notify_all()
        except Exception as exc:  # the thread must say why it stopped, not die silently
            log.exception("the simulation stopped")
            self.error = exc
            self._stop.set()

    def _publish(self, message: Message) -> None:
        if self._client is None:
            return
        self._client.publish(message.topic, message.payload, qos=1, retain=message.retain)
        if not message.retain:
            self.published += 1

    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._refused = str(reason)
            self._connack.set()
            return
        self._connected = True
        client.subscribe([(topic, 1) for topic in self._by_topic])
        with self.lock:
            states = [
                Message(a.topic_state, a.state_payload(), True) for a in self.actuators.values()
            ]
        for message in states:
            self._publish(message)
        self._connack.set()

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected = False
        if not self._stop.is_set():
            log.warning("lost the broker (%s); reconnecting", reason)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        act = self._by_topic.get(msg.topic)
        if act is None:
            return
        with self.lock:
            reason = act.handle(bytes(msg.payload))
            spec, t = act.spec, self.world.t
            if reason is not None:
                self.rejections.append(Rejection(t, spec.device, spec.actuator, reason))
                log.info("%s refused a command: %s", spec.key, reason)
                return
            st = act.state
            self.commands.append(
                Applied(t, spec.device, spec.actuator, st.action, st.value, st.command_id)
            )
            payload = act.state_payload()
        self._publish(Message(act.topic_state, payload, retain=True))

    # -- what the demo shows ----------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        with self.lock:
            return Snapshot(
                sim_time=self.world.t,
                start_hour=self.world.start_hour,
                outside=self.world.outside_temperature,
                rooms={name: self._room_snapshot(name) for name in self.world.rooms},
                actuators={key: self._actuator_snapshot(key) for key in self.actuators},
                published=self.published,
                connected=self._connected,
            )

    def _room_snapshot(self, name: str) -> RoomSnapshot:
        room, band = self.world.rooms[name], self._bands[name]
        hvac = next(
            (
                a.state
                for k, a in self.actuators.items()
                if self.room_of[k] == name and a.spec.actuator == "hvac"
            ),
            None,
        )
        return RoomSnapshot(
            name=name,
            temperature=room.temperature,
            humidity=room.humidity,
            co2=room.co2,
            lux=room.lux,
            people=room.people,
            target=self.scenario.rooms[name].target,
            hvac=hvac,
            in_band_s=band.inside,
            tracked_s=band.tracked,
            min_temperature=min(band.low, room.temperature),
            max_temperature=max(band.high, room.temperature),
        )

    def _actuator_snapshot(self, key: str) -> ActuatorSnapshot:
        act = self.actuators[key]
        return ActuatorSnapshot(
            device=act.spec.device,
            actuator=act.spec.actuator,
            room=self.room_of[key],
            state=act.state,
            accepted=act.accepted,
            rejected=dict(act.rejected),
        )
