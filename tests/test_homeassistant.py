"""Home Assistant discovery payloads, checked against its documented MQTT schema.

The models below transcribe the configuration variables documented for MQTT discovery
(home-assistant.io: integrations/mqtt "Discovery payload" and "origin", integrations/
sensor.mqtt, integrations/binary_sensor.mqtt, and the device class lists of integrations/
sensor and integrations/binary_sensor). They are strict: an undocumented key, a wrong type,
a device class or unit Home Assistant does not know, or exclusive options used together,
are errors.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import jinja2
import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.service.homeassistant import (
    Announcement,
    clean_payload,
    clean_topic,
    discovery_messages,
    removal_messages,
    safe_id,
    should_announce,
)

TEMPLATES = jinja2.Environment(undefined=jinja2.StrictUndefined)
DISCOVERY_TOPIC = re.compile(
    r"^homeassistant/(?P<component>[a-z_]+)/(?P<node>[a-zA-Z0-9_-]+)/(?P<object>[a-zA-Z0-9_-]+)/config$"
)


def template(text: str) -> str:
    try:
        TEMPLATES.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"invalid template {text!r}: {exc}") from None
    return text


def publish_topic(topic: str) -> str:
    if not topic or "+" in topic or "#" in topic or "\0" in topic or len(topic.encode()) > 65535:
        raise ValueError(f"not a topic one can publish to: {topic!r}")
    return topic


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Device(Strict):
    configuration_url: str | None = None
    connections: list[tuple[str, str]] | None = None
    hw_version: str | None = None
    identifiers: str | list[str] | None = None
    manufacturer: str | None = None
    model: str | None = None
    model_id: str | None = None
    name: str | None = None
    serial_number: str | None = None
    suggested_area: str | None = None
    sw_version: str | None = None
    via_device: str | None = None

    @model_validator(mode="after")
    def _identified(self) -> Device:
        if not (self.identifiers or self.connections):
            raise ValueError("a device needs identifiers or connections")
        return self


class Origin(Strict):
    name: str
    sw_version: str | None = None
    support_url: str | None = None


class Availability(Strict):
    topic: str
    payload_available: str = "online"
    payload_not_available: str = "offline"
    value_template: str | None = None


class Entity(Strict):
    """The options MQTT sensor and binary_sensor share."""

    availability: list[Availability] | None = None
    availability_mode: Literal["all", "any", "latest"] | None = None
    availability_template: str | None = None
    availability_topic: str | None = None
    device: Device | None = None
    enabled_by_default: bool | None = None
    encoding: str | None = None
    entity_category: Literal["diagnostic"] | None = None
    entity_picture: str | None = None
    expire_after: int | None = Field(default=None, ge=0)
    force_update: bool | None = None
    icon: str | None = Field(default=None, pattern=r"^[a-z]+:[a-z0-9-]+$")
    json_attributes_template: str | None = None
    json_attributes_topic: str | None = None
    name: str | None = None
    object_id: str | None = None
    origin: Origin | None = None
    payload_available: str = "online"
    payload_not_available: str = "offline"
    qos: Literal[0, 1, 2] | None = None
    state_topic: str
    unique_id: str | None = None
    value_template: str | None = None

    @field_validator("availability_template", "json_attributes_template", "value_template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        return None if value is None else template(value)

    @field_validator("state_topic", "availability_topic", "json_attributes_topic")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        return None if value is None else publish_topic(value)

    @model_validator(mode="after")
    def _rules(self) -> Entity:
        if self.availability is not None and self.availability_topic is not None:
            raise ValueError("availability and availability_topic are exclusive")
        if self.availability_template is not None and self.availability_topic is None:
            raise ValueError("availability_template needs availability_topic")
        if self.device is not None and self.unique_id is None:
            raise ValueError("device only works when unique_id is set")
        return self


SENSOR_UNITS: dict[str, set[str | None]] = {
    "temperature": {"°C", "°F", "K"},
    "humidity": {"%"},
    "carbon_dioxide": {"ppm"},
    "pressure": {"Pa", "kPa", "hPa", "bar", "cbar", "mbar", "mmHg", "inHg", "psi"},
    "illuminance": {"lx"},
    "power": {"mW", "W", "kW", "MW", "GW", "TW"},
    "energy": {"J", "kJ", "MJ", "GJ", "mWh", "Wh", "kWh", "MWh", "GWh", "TWh"},
    "voltage": {"V", "mV", "µV", "kV", "MV"},
    "current": {"A", "mA"},
    "battery": {"%"},
    "moisture": {"%"},
    "speed": {"ft/s", "in/d", "in/h", "in/s", "km/h", "kn", "m/s", "mph", "mm/d", "mm/s"},
    "wind_speed": {"Beaufort", "ft/s", "km/h", "kn", "m/s", "mph"},
    "enum": {None},
}
SensorClass = Literal[
    "apparent_power", "aqi", "area", "atmospheric_pressure", "battery",
    "blood_glucose_concentration", "carbon_dioxide", "carbon_monoxide", "current",
    "data_rate", "data_size", "date", "distance", "duration", "energy", "energy_storage",
    "enum", "frequency", "gas", "humidity", "illuminance", "irradiance", "moisture",
    "monetary", "nitrogen_dioxide", "nitrogen_monoxide", "nitrous_oxide", "ozone", "ph",
    "pm1", "pm25", "pm10", "power_factor", "power", "precipitation",
    "precipitation_intensity", "pressure", "reactive_power", "signal_strength",
    "sound_pressure", "speed", "sulphur_dioxide", "temperature", "timestamp",
    "volatile_organic_compounds", "volatile_organic_compounds_parts", "voltage", "volume",
    "volume_flow_rate", "volume_storage", "water", "weight", "wind_speed",
]  # fmt: skip


class Sensor(Entity):
    device_class: SensorClass | None = None
    last_reset_value_template: str | None = None
    options: list[str] | None = Field(default=None, min_length=1)
    suggested_display_precision: int | None = None
    state_class: Literal["measurement", "total", "total_increasing"] | None = None
    unit_of_measurement: str | None = None

    @model_validator(mode="after")
    def _sensor_rules(self) -> Sensor:
        if self.options is not None and (
            self.device_class != "enum" or self.state_class or self.unit_of_measurement
        ):
            raise ValueError("options need device_class enum, without state_class or unit")
        known = SENSOR_UNITS.get(self.device_class or "")
        if known is not None and self.unit_of_measurement not in known:
            raise ValueError(f"{self.unit_of_measurement!r} is no unit of {self.device_class}")
        if self.device_class == "energy" and self.state_class == "measurement":
            raise ValueError("an energy sensor is a total, not a measurement")
        return self


BinaryClass = Literal[
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
    "garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving",
    "occupancy", "opening", "plug", "power", "presence", "problem", "running", "safety",
    "smoke", "sound", "tamper", "update", "vibration", "window",
]  # fmt: skip


class BinarySensor(Entity):
    device_class: BinaryClass | None = None
    off_delay: int | None = Field(default=None, ge=0)
    payload_off: str = "OFF"
    payload_on: str = "ON"


SCHEMAS: dict[str, type[Entity]] = {"sensor": Sensor, "binary_sensor": BinarySensor}

ANNOUNCEMENT = Announcement(
    prefix="edge",
    agent_id="pi-livingroom",
    version="0.6.0",
    series=[
        ("livingroom-1", "temperature"),
        ("livingroom-1", "humidity"),
        ("livingroom-1", "co2"),
        ("kitchen-1", "energy"),
        ("garden-1", "soil_ph"),
    ],
    units={"temperature": "C", "humidity": "%", "co2": "ppm", "energy": "kWh", "soil_ph": None},
    policies={"climate": ["cool", "heat", "off"]},
)


def entities(a: Announcement = ANNOUNCEMENT) -> dict[str, tuple[str, Entity, dict[str, Any]]]:
    """``{unique_id: (topic, validated model, raw payload)}``, every payload validated."""
    out = {}
    for topic, payload in discovery_messages(a):
        match = DISCOVERY_TOPIC.match(topic)
        assert match, topic
        raw = json.loads(payload)
        model = SCHEMAS[match["component"]].model_validate(raw)
        assert model.unique_id is not None and model.unique_id not in out
        out[model.unique_id] = (topic, model, raw)
    return out


def render(text: str | None, payload: dict[str, Any]) -> str:
    assert text is not None
    return TEMPLATES.from_string(text).render(value=json.dumps(payload), value_json=payload)


def test_every_payload_follows_the_documented_schema() -> None:
    found = entities()
    assert len(found) == 1 + 5 + 1
    for topic, _, _ in found.values():
        assert DISCOVERY_TOPIC.match(topic)["node"] == "pi-livingroom"  # type: ignore[index]


def test_the_schema_is_strict() -> None:
    payload = {"state_topic": "edge/x", "unit_of_measurement": "°C"}
    Sensor.model_validate(payload)
    for bad in (
        {"stat_t": "edge/x"},  # an abbreviation we do not use is an unknown key here
        {**payload, "colour": "red"},
        {**payload, "device_class": "temperature", "unit_of_measurement": "C"},
        {**payload, "availability": [{"topic": "a"}], "availability_topic": "a"},
        {**payload, "device": {"name": "no identifiers"}, "unique_id": "u"},
        {**payload, "state_topic": "edge/#"},
        {**payload, "value_template": "{{ value_json.value "},
        {**payload, "qos": "1"},
    ):
        with pytest.raises(ValidationError):
            Sensor.model_validate(bad)


def test_cleaned_sensors() -> None:
    found = entities()
    _, temp, raw = found["edge-agent_pi-livingroom_livingroom-1_temperature"]
    assert isinstance(temp, Sensor)
    assert (temp.device_class, temp.unit_of_measurement, temp.state_class) == (
        "temperature",
        "°C",
        "measurement",
    )
    assert temp.state_topic == clean_topic("edge", "pi-livingroom", "livingroom-1", "temperature")
    assert temp.state_topic == "edge/agents/pi-livingroom/clean/livingroom-1/temperature"
    state = json.loads(clean_payload(23.4, 1764370000.0, "C"))
    assert render(temp.value_template, state) == "23.4"
    assert raw["device"] == {
        "identifiers": ["edge-agent_pi-livingroom_livingroom-1"],
        "name": "livingroom-1",
        "via_device": "edge-agent_pi-livingroom",
    }

    co2 = found["edge-agent_pi-livingroom_livingroom-1_co2"][1]
    assert isinstance(co2, Sensor) and co2.device_class == "carbon_dioxide"
    energy = found["edge-agent_pi-livingroom_kitchen-1_energy"][1]
    assert isinstance(energy, Sensor) and energy.state_class == "total_increasing"
    ph = found["edge-agent_pi-livingroom_garden-1_soil_ph"][1]
    assert isinstance(ph, Sensor)
    assert (ph.device_class, ph.unit_of_measurement) == (None, None)


def test_decisions_are_enum_sensors_on_the_results_topic() -> None:
    _, decision, _ = entities()["edge-agent_pi-livingroom_policy_climate"]
    assert isinstance(decision, Sensor)
    assert decision.device_class == "enum"
    assert decision.options == ["cool", "heat", "off"]
    assert decision.state_topic == "edge/agents/pi-livingroom/results/climate"
    result = {
        "agent": "pi-livingroom", "policy": "climate", "ts": 1.0, "window_end": 1.0,
        "action": "cool", "value": 22.0, "confidence": 0.83,
        "scores": {"cool": 0.83, "heat": 0.02, "off": 0.15}, "model_sha256": "ab",
    }  # fmt: skip
    assert render(decision.value_template, result) == "cool"
    attributes = json.loads(render(decision.json_attributes_template, result))
    assert attributes == {"value": 22.0, "confidence": 0.83, "scores": result["scores"]}


def test_availability_follows_the_status_topic() -> None:
    online = {"state": "online", "ts": 1.0, "version": "0.6.0", "readings_total": 5}
    offline = {**online, "state": "offline"}
    for _, model, _ in entities().values():
        if isinstance(model, BinarySensor):
            continue
        assert model.availability_topic == "edge/agents/pi-livingroom/status"
        assert render(model.availability_template, online) == model.payload_available
        assert render(model.availability_template, offline) == model.payload_not_available
        assert model.origin == Origin(name="edge-agent", sw_version="0.6.0")


def test_connectivity_binary_sensor() -> None:
    topic, link, _ = entities()["edge-agent_pi-livingroom_connectivity"]
    assert topic == "homeassistant/binary_sensor/pi-livingroom/connectivity/config"
    assert isinstance(link, BinarySensor)
    assert link.device_class == "connectivity"
    assert link.entity_category == "diagnostic"
    assert link.state_topic == "edge/agents/pi-livingroom/status"
    assert link.availability_topic is None  # offline shows as disconnected, not unavailable
    assert render(link.value_template, {"state": "online"}) == link.payload_on
    assert render(link.value_template, {"state": "offline"}) == link.payload_off
    assert link.device is not None
    assert link.device.identifiers == ["edge-agent_pi-livingroom"]
    assert link.device.sw_version == "0.6.0"


def test_ids_outside_the_allowed_characters_are_made_safe_and_kept_apart() -> None:
    assert safe_id("pi-livingroom_2") == "pi-livingroom_2"
    odd, plain = safe_id("pi.living room"), safe_id("pi_living_room")
    assert re.fullmatch(r"[a-zA-Z0-9_-]+", odd) and odd != plain
    a = Announcement(prefix="edge", agent_id="pi.lr", version="1", series=[("dev.1", "temp")])
    assert len(entities(a)) == 2


def test_home_assistant_birth_message_triggers_a_new_announcement() -> None:
    assert should_announce("homeassistant/status", b"online")
    assert should_announce("homeassistant/status", b"online\n")
    assert not should_announce("homeassistant/status", b"offline")
    assert not should_announce("edge/agents/x/status", b"online")
    assert should_announce("ha/status", b"online", discovery_prefix="ha")


def test_removal() -> None:
    topics = [t for t, _ in discovery_messages(ANNOUNCEMENT)]
    assert removal_messages(topics[:2]) == [(topics[0], b""), (topics[1], b"")]
