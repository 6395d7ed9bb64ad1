"""The configuration file: pydantic models of the YAML, with every error reported by its path.

Unknown keys are errors, durations are strings like ``"30s"``, and a file is either valid as a
whole or refused as a whole (:func:`load_config` raises :class:`ConfigError` listing everything).
"""

from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, overload

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from agent.actionvalues import value_actions
from agent.errors import ConfigError
from agent.units import known_unit

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)\s*$")
_SIZE_UNITS = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
}
_TOPIC_WORD = re.compile(r"^[^/+#\s]+$")


def parse_duration(value: object) -> float:
    """``"500ms"``, ``"30s"``, ``"5m"``, ``"2h"``, ``"7d"`` -> seconds."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f'duration must be a string like "30s", got {value!r}')
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"duration must be a number and a unit (ms, s, m, h, d), got {value!r}")
    seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"duration must be greater than 0, got {value!r}")
    return seconds


def parse_size(value: object) -> int:
    """``"500MB"``, ``"2GiB"`` -> bytes."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f'size must be a string like "500MB", got {value!r}')
    match = _SIZE.match(value)
    if not match:
        raise ValueError(
            f"size must be a number and a unit (B, KB, MB, GB, KiB, MiB, GiB), got {value!r}"
        )
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def _topic_word(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {value!r}")
    if not _TOPIC_WORD.match(value):
        raise ValueError(
            f"must be one MQTT topic level without '/', '+', '#' or spaces, got {value!r}"
        )
    return value


# what the YAML says (a string with a unit), for the JSON Schema; the model holds the number
DURATION_SCHEMA = {
    "type": "string",
    "pattern": _DURATION.pattern,
    "description": 'a duration: a number and a unit (ms, s, m, h, d), e.g. "30s"',
}
SIZE_SCHEMA = {
    "type": "string",
    "pattern": _SIZE.pattern,
    "description": 'a size: a number and a unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. "500MB"',
}
Duration = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema(DURATION_SCHEMA)]
Size = Annotated[int, BeforeValidator(parse_size), WithJsonSchema(SIZE_SCHEMA)]
TopicWord = Annotated[str, BeforeValidator(_topic_word)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ordered_pair(pair: tuple[float, float], what: str) -> tuple[float, float]:
    lo, hi = pair
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{what} must be finite numbers, got [{lo}, {hi}]")
    if lo >= hi:
        raise ValueError(f"{what} must be [low, high] with low < high, got [{lo}, {hi}]")
    return pair


class AgentSection(_Section):
    id: TopicWord = Field(default_factory=socket.gethostname)
    data_dir: Path = Path("/var/lib/edge-agent")
    status_interval: Duration = 30.0
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("data_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()


class TlsSection(_Section):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _pairs(self) -> TlsSection:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self

    @property
    def enabled(self) -> bool:
        return any((self.ca_file, self.cert_file))


class ReconnectSection(_Section):
    min_delay: Duration = 1.0
    max_delay: Duration = 60.0


class MqttSection(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    prefix: TopicWord = "edge"
    protocol: Annotated[
        Literal["5", "3.1.1"], WithJsonSchema({"enum": ["5", "3.1.1", 5, "311", 311]})
    ] = "5"
    client_id: str | None = None
    username: str | None = None
    password_file: Path | None = None
    tls: TlsSection = TlsSection()
    subscriptions: list[str] | None = None
    max_payload_bytes: int = Field(default=4096, ge=16)
    # MQTT 5 Maximum Packet Size announced on connect; null: derived from what the agent takes
    max_packet_bytes: Size | None = None
    # readings waiting for the ingest thread; QoS 0 beyond it is dropped (QoS 1 is bounded by
    # receive_maximum, since it is acknowledged only after its commit)
    queue_limit: int = Field(default=2000, ge=10, le=1_000_000)
    keepalive: Duration = 30.0
    session_expiry: Duration = 7 * 86400.0
    receive_maximum: int = Field(default=200, ge=1, le=65535)
    reconnect: ReconnectSection = ReconnectSection()

    @field_validator("max_packet_bytes")
    @classmethod
    def _packet(cls, value: int | None) -> int | None:
        if value is not None and not 1024 <= value <= 268_435_455:
            raise ValueError(f"max_packet_bytes must be between 1KiB and 256MiB, got {value}")
        return value

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol(cls, value: object) -> object:
        if value in (5, "5", 5.0):
            return "5"
        if value in ("3.1.1", "311", 311):
            return "3.1.1"
        raise ValueError(f"MQTT protocol must be 5 or 3.1.1, got {value!r}")

    @field_validator("subscriptions", mode="after")
    @classmethod
    def _filters(cls, value: list[str] | None) -> list[str] | None:
        for topic in value or []:
            levels = topic.split("/")
            if not topic or any("#" in lv and lv != "#" for lv in levels) or "#" in levels[:-1]:
                raise ValueError(f"invalid topic filter {topic!r}")
        return value

    @property
    def topic_filters(self) -> list[str]:
        return (
            self.subscriptions if self.subscriptions is not None else [f"{self.prefix}/sensors/#"]
        )

    def password(self) -> str | None:
        """The broker password, from ``password_file`` or ``EDGE_AGENT_MQTT_PASSWORD``."""
        if self.password_file is not None:
            return self.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        return os.environ.get("EDGE_AGENT_MQTT_PASSWORD")


class OutlierConfig(_Section):
    window: int = Field(default=7, ge=3, le=1001)
    sigmas: float = Field(default=3.0, gt=0)
    min_deviation: float = Field(default=0.0, ge=0)


class SmoothConfig(_Section):
    ewma: float | None = Field(default=None, gt=0, le=1)
    median: int | None = Field(default=None, ge=1, le=1001)

    @model_validator(mode="after")
    def _one(self) -> SmoothConfig:
        if (self.ewma is None) == (self.median is None):
            raise ValueError(
                "give exactly one of ewma (a weight in (0, 1]) or median (a window length)"
            )
        return self


class NormalizeConfig(_Section):
    method: Literal["minmax", "zscore"] = "minmax"
    range: tuple[float, float] | None = None

    @field_validator("range")
    @classmethod
    def _range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        return None if value is None else _ordered_pair(value, "range")


class SensorConfig(_Section):
    unit: str | None = None
    range: tuple[float, float] | None = None
    outlier: OutlierConfig | None = None
    smooth: SmoothConfig | None = None
    deadband: float | None = Field(default=None, ge=0)
    normalize: NormalizeConfig = NormalizeConfig()

    @field_validator("range")
    @classmethod
    def _range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        return None if value is None else _ordered_pair(value, "range")

    @field_validator("unit")
    @classmethod
    def _unit(cls, value: str | None) -> str | None:
        if value is not None and not known_unit(value):
            raise ValueError(f"unknown unit {value!r}")
        return value


class SensorsSection(BaseModel):
    """``sensors:``: settings per quantity (any key that names a quantity) and the limits on
    the series the wire may create: ``strict`` refuses quantities not configured here;
    ``max_series_per_device`` and ``max_series`` cap how many series new names can make.

    Read like a mapping of quantity -> :class:`SensorConfig` (``get``, ``[]``, ``in``,
    ``items``, iteration over the quantity names)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[TopicWord, SensorConfig] = Field(init=False)

    strict: bool = False
    max_series_per_device: int = Field(default=32, ge=1, le=100_000)
    max_series: int = Field(default=1000, ge=1, le=1_000_000)

    @property
    def kinds(self) -> dict[str, SensorConfig]:
        return self.__pydantic_extra__ or {}

    @overload
    def get(self, quantity: str) -> SensorConfig | None: ...
    @overload
    def get(self, quantity: str, default: SensorConfig) -> SensorConfig: ...
    def get(self, quantity: str, default: SensorConfig | None = None) -> SensorConfig | None:
        return self.kinds.get(quantity, default)

    def __getitem__(self, quantity: str) -> SensorConfig:
        return self.kinds[quantity]

    def __contains__(self, quantity: object) -> bool:
        return quantity in self.kinds

    def __len__(self) -> int:
        return len(self.kinds)

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]  # a mapping, not a model
        return iter(self.kinds)

    def keys(self) -> KeysView[str]:
        return self.kinds.keys()

    def values(self) -> ValuesView[SensorConfig]:
        return self.kinds.values()

    def items(self) -> ItemsView[str, SensorConfig]:
        return self.kinds.items()


class FeaturesSection(_Section):
    windows: list[Duration] = Field(default_factory=lambda: [60.0, 300.0, 900.0], min_length=1)


class RetentionSection(_Section):
    max_age: Duration | None = 30 * 86400.0
    max_size: Size | None = None
    every: Duration = 600.0


class StorageSection(_Section):
    batch_size: int = Field(default=500, ge=1, le=100_000)
    batch_interval: Duration = 0.2
    synchronous: Literal["full", "normal"] = "full"
    retention: RetentionSection = RetentionSection()


class ModelSection(_Section):
    path: str = "bundled:smollm2-135m"
    threads: int = Field(default=1, ge=1, le=256)
    context: int = Field(default=2048, ge=128)


class MetricsSection(_Section):
    port: int | None = Field(default=None, ge=0, le=65535)  # null: no Prometheus endpoint
    host: str = "127.0.0.1"


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def is_loopback(host: str) -> bool:
    """Exactly 127.0.0.1, ::1 or localhost: any other address (127.0.0.2 too, and 0.0.0.0)
    counts as reachable by others, so the dashboard there needs a token."""
    return host.strip().lower() in LOOPBACK_HOSTS


class WebSection(_Section):
    # the local web dashboard; port 0 takes a free port (the log says which)
    port: int = Field(default=8080, ge=0, le=65535)
    host: str = "127.0.0.1"
    # a file holding the dashboard's token; required unless host is loopback
    token_file: Path | None = None

    @model_validator(mode="after")
    def _token_off_loopback(self) -> WebSection:
        if not is_loopback(self.host) and self.token_file is None:
            raise ValueError(f"web.host {self.host!r} is not loopback (127.0.0.1, ::1, "
                             "localhost): set web.token_file, or anyone who reaches it reads "
                             "the agent's data")
        return self


class HomeAssistantSection(_Section):
    discovery: bool = False
    prefix: TopicWord = "homeassistant"


class ServiceSection(_Section):
    stall_after: Duration = 120.0  # work waiting this long with no commit: stop watchdog pings


class SecuritySection(_Section):
    command_key_file: Path | None = None
    # the public half of the operator's Ed25519 model-update key (edge-agent keygen --update);
    # without it the agent takes no model updates
    update_public_key_file: Path | None = None

    # this agent's own Ed25519 key (edge-agent keygen --identity PATH): signs its peer messages
    identity_key_file: Path | None = None
    # the site roster (agent id -> public key): with it, only signed peer messages count
    roster_file: Path | None = None

    @model_validator(mode="after")
    def _roster_needs_identity(self) -> SecuritySection:
        if self.roster_file is not None and self.identity_key_file is None:
            raise ValueError("roster_file needs identity_key_file (this agent's own key, "
                             "made with edge-agent keygen --identity PATH), or the other "
                             "members refuse what this agent sends")
        return self


# short codes people write -> home-assistant-intents' own codes
LANGUAGE_ALIASES = {"zh": "zh-CN", "zh-cn": "zh-CN", "zh-hans": "zh-CN", "zh-tw": "zh-TW",
                    "zh-hant": "zh-TW", "zh-hk": "zh-HK", "pt-br": "pt-BR"}


def template_language(code: str) -> str:
    return LANGUAGE_ALIASES.get(code.lower(), code)


class IntentsSection(_Section):
    """Natural-language requests (SPEC 7): one worker answers them in turn, in the languages
    whose sentence templates (home-assistant-intents) are loaded."""

    languages: list[str] = Field(default_factory=lambda: ["en"], min_length=1)
    fuzzy_min: float = Field(default=80.0, ge=50, le=100)  # rapidfuzz score to accept a typo
    fuzzy_margin: float = Field(default=6.0, ge=0, le=50)  # closer than this: ask, not guess
    queue: int = Field(default=16, ge=1, le=10_000)  # requests waiting; more are refused
    per_minute: int = Field(default=20, ge=1, le=10_000)  # requests per requester id
    confirm_ttl: Duration = Field(default=30.0, ge=1.0, le=600.0)  # a confirmation token's life

    @field_validator("languages")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        from home_assistant_intents import get_languages

        known = set(get_languages())
        codes = [template_language(v) for v in value]
        bad = [v for v, c in zip(value, codes, strict=True) if c not in known]
        if bad:
            raise ValueError(f"no sentence templates for {bad}; known: {', '.join(sorted(known))}")
        return list(dict.fromkeys(codes))


class ValueRange(_Section):
    min: float
    max: float
    actions: list[TopicWord] | None = None  # the actions the range belongs to (see value_actions)

    @model_validator(mode="after")
    def _order(self) -> ValueRange:
        _ordered_pair((self.min, self.max), "value range")
        return self


_ABOVE, _BELOW, _INSIDE = ("cool",), ("heat",), ("off", "close", "stop", "idle")
CONFIRM_BY_DEFAULT = ("lock", "valve")


class Respond(_Section):
    """Which action answers a target input that is above, below or inside its band."""

    above: TopicWord | None = None
    below: TopicWord | None = None
    inside: TopicWord


class ActuatorConfig(_Section):
    device: TopicWord
    actuator: TopicWord
    name: str | None = None
    aliases: list[str] = Field(default_factory=list)
    actions: list[TopicWord] = Field(min_length=1)
    value: ValueRange | None = None
    respond: Respond | None = None
    confirm: bool | None = None  # intents must name the action outright (default: locks, valves)

    @model_validator(mode="after")
    def _value(self) -> ActuatorConfig:
        if self.value is not None:
            value_actions(list(self.actions), self.value.actions)  # ValueError says how to fix
        return self

    @property
    def takes_value(self) -> list[str]:
        """The actions the value range belongs to (none without a range)."""
        return [] if self.value is None else value_actions(list(self.actions), self.value.actions)

    @model_validator(mode="after")
    def _respond(self) -> ActuatorConfig:
        if self.respond is not None:
            for side in ("above", "below", "inside"):
                action = getattr(self.respond, side)
                if action is not None and action not in self.actions:
                    raise ValueError(f"respond.{side}: {action!r} is not one of the actions "
                                     f"{self.actions}")
        return self

    def derived_respond(self) -> Respond | None:
        def first(words: tuple[str, ...]) -> str | None:
            return next((a for a in self.actions if a in words), None)

        above, below, inside = first(_ABOVE), first(_BELOW), first(_INSIDE)
        if inside is None or (above is None and below is None):
            return None
        return Respond(above=above, below=below, inside=inside)

    @property
    def responses(self) -> Respond | None:
        return self.respond or self.derived_respond()

    @property
    def key(self) -> str:
        return f"{self.device}/{self.actuator}"

    @property
    def needs_confirmation(self) -> bool:
        return self.confirm if self.confirm is not None else self.actuator in CONFIRM_BY_DEFAULT


class SafetyConfig(_Section):
    min_interval: Duration = 30.0  # between two commands to one actuator
    max_per_hour: int = Field(default=30, ge=1)  # commands to one actuator in any hour
    min_dwell: Duration = 120.0  # an action is kept this long before another one replaces it
    command_ttl: Duration = 30.0  # a command expires this long after it was made


class DpConfig(_Section):
    """Differential privacy of a member's update: clipped to L2 norm ``clip``, plus Gaussian
    noise of standard deviation ``sigma * clip`` on every weight."""

    clip: float = Field(gt=0)
    sigma: float = Field(ge=0)


class FederatedConfig(_Section):
    """Federated learning of the policy's ``embed`` head among the group's members."""

    every: Duration = 86400.0  # the leader starts a federation this long after the last one
    start_after: Duration = 30.0  # and not before it has been up this long
    rounds: int = Field(default=10, ge=1)
    epochs: int = Field(default=30, ge=1)  # local epochs per round
    lr: float = Field(default=0.5, gt=0)
    deadline: Duration = 60.0  # a round waits this long for the members' updates
    min_members: int = Field(default=2, ge=1)  # online members needed to start
    examples: int = Field(default=240, ge=10)  # generated training examples per member
    heldout: int = Field(default=60, ge=10)  # generated held-out cases per member
    secure: bool = False  # pairwise masks: the leader sees only the sum of the updates
    dp: DpConfig | None = None
    # the most examples one member's update may claim (default: 2 x examples); a round
    # announces it and refuses updates that claim more
    max_count: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _secure(self) -> FederatedConfig:
        if self.secure and self.min_members < 3:
            raise ValueError("secure aggregation needs min_members >= 3 (with two members the "
                             "leader could subtract its own update from the sum)")
        return self


class RobustConfig(_Section):
    """Coordinate-wise robust averaging of the members' score vectors (method mean) and of
    their federated updates: one member cannot pull the result further than the others let."""

    method: Literal["trimmed-mean", "median"] = "trimmed-mean"
    trim: float = Field(default=0.2, ge=0, lt=0.5)  # share cut from each end (trimmed-mean)


class PeersConfig(_Section):
    group: TopicWord
    method: Literal["mean", "vote"] = "mean"
    quorum: int = Field(default=1, ge=1)
    deadline: Duration = 5.0
    federated: FederatedConfig | None = None
    robust: RobustConfig | None = None

    @model_validator(mode="after")
    def _robust_not_secure(self) -> PeersConfig:
        if self.robust is not None and self.federated is not None and self.federated.secure:
            raise ValueError("robust averaging needs each update, secure aggregation hides "
                             "them: use one of robust or federated.secure")
        return self


class PolicyConfig(_Section):
    name: TopicWord
    every: Duration = 30.0
    inputs: list[str] = Field(min_length=1)
    targets: dict[str, tuple[float, float]] = Field(default_factory=dict)
    goal: str | None = None
    engine: Literal["embed", "llm", "rules"] = "embed"
    min_accuracy: float = Field(default=0.9, ge=0, le=1)
    actuators: list[ActuatorConfig] = Field(min_length=1)
    peers: PeersConfig | None = None
    safety: SafetyConfig = SafetyConfig()

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, value: list[str]) -> list[str]:
        for item in value:
            parts = item.split("/")
            if len(parts) != 2 or not all(_TOPIC_WORD.match(p) for p in parts):
                raise ValueError(f"inputs are written device/quantity, got {item!r}")
        return value

    @model_validator(mode="after")
    def _targets(self) -> PolicyConfig:
        if self.peers is not None and self.peers.federated is not None and self.engine != "embed":
            raise ValueError("peers.federated trains the embed engine's head; set engine: embed")
        for key, band in self.targets.items():
            if key not in self.inputs:
                raise ValueError(f"target {key!r} is not one of the policy's inputs")
            _ordered_pair(band, f"target band of {key}")
        for act in self.actuators if self.targets else []:
            if act.responses is None:
                raise ValueError(f"actuator {act.key}: cannot tell which of {act.actions} answers "
                                 f"a value above, below or inside the target band; add "
                                 f"respond: {{above: …, below: …, inside: …}}")
        return self


_ACTUATOR_ACTION = re.compile(r"^([^/+#\s=]+)/([^/+#\s=]+)=([^/+#\s=]+)$")
_CONDITION = re.compile(r"^([^/+#\s]+)/([^/+#\s]+)\s*(<|>|<=|>=)\s*(-?\d+(?:\.\d+)?)$")


def _actuator_action(value: object) -> str:
    if not isinstance(value, str) or not _ACTUATOR_ACTION.match(value):
        raise ValueError(f"write device/actuator=action, got {value!r}")
    return value


#: what ``when: "device/name is …"`` may name: a health state, or one fault (docs/diagnosis.md)
HEALTH_STATES = ("faulty", "suspect")
FAULTS = ("silent", "stuck", "drift", "spiky", "noisy", "out_of_range", "wrong_unit",
          "mixed_units", "no_effect", "no_ack", "contradicts", "fighting")
HEALTH_CONDITION = re.compile(r"^([^/+#\s]+)/([^/+#\s]+)\s+is\s+(\S+)$")


def _condition(value: object) -> str:
    text = value.strip() if isinstance(value, str) else ""
    health = HEALTH_CONDITION.match(text)
    if health is not None and health.group(3) not in (*HEALTH_STATES, *FAULTS):
        raise ValueError(f"{health.group(3)!r} is not a health state nor a fault; write "
                         f"faulty, suspect or one of {', '.join(FAULTS)}")
    if health is None and not _CONDITION.match(text):
        raise ValueError(f'write a condition like "leak-1/water > 0.5" or '
                         f'"livingroom-1/temperature is faulty", got {value!r}')
    return text


ActuatorAction = Annotated[str, BeforeValidator(_actuator_action)]
Condition = Annotated[str, BeforeValidator(_condition)]


class InterlockConfig(_Section):
    """``never_together``: two actuator states that must not hold at once (refused);
    ``when`` + ``then``: while the condition holds, only that action is allowed, and the agent
    commands it. A condition compares a reading (``leak-1/water > 0.5``) or names the health
    of a series or actuator (``livingroom-1/temperature is faulty``, ``… is suspect``, or one
    fault: ``livingroom-hvac/hvac is no_effect``)."""

    name: str
    never_together: list[ActuatorAction] | None = Field(default=None, min_length=2,
                                                        max_length=2)
    when: Condition | None = None
    then: ActuatorAction | None = None

    @model_validator(mode="after")
    def _shape(self) -> InterlockConfig:
        pair = self.when is not None and self.then is not None
        if (self.never_together is not None) == pair or (self.when is None) != (self.then is None):
            raise ValueError("give either never_together: [a, b], or when: and then:")
        return self


PausingFault = Literal["silent", "stuck", "drift", "wrong_unit", "out_of_range", "spiky", "noisy",
                       "mixed_units"]
PAUSING_FAULTS: tuple[PausingFault, ...] = ("silent", "stuck", "drift", "wrong_unit",
                                            "out_of_range")


class DiagnosisSection(_Section):
    """Fault diagnosis of sensors and actuators (agent.diagnosis); the health topics."""

    enabled: bool = True
    check_every: Duration = 10.0
    pause: bool = True  # a policy stops acting on a faulty input
    # the faults that pause a policy; spikes, noise and a few readings in another unit are what
    # the outlier filter cleans
    pause_on: list[PausingFault] = Field(default_factory=lambda: list(PAUSING_FAULTS))
    safe_actions: dict[TopicWord, TopicWord] = Field(default_factory=dict)  # policy -> action|hold
    rooms: dict[TopicWord, list[TopicWord]] = Field(default_factory=dict)  # devices of one room
    effect_after: Duration = 1200.0  # an HVAC on heat/cool must have moved its room by then
    fight_window: Duration = 600.0  # a change by hand this soon after a command fights it
    fight_memory: Duration = 7200.0
    # auto: the fitness gate picks the statistical detectors or the model's diagnose engine per
    # quantity; statistical: never embed. The engines are prepared this long after the model is
    # ready, so that they never compete with start-up and the decisions' own gate
    engine: Literal["auto", "statistical"] = "auto"
    engine_after: Duration = 300.0
    # federated learning of the diagnose heads (engine auto) with the members of ``group``, a
    # federation per quantity on {p}/groups/{group}/fl/diagnose-{quantity}/... (docs/wire.md);
    # a federated head is installed only if the gate finds it no worse than the one it replaces
    group: TopicWord | None = None
    federated: FederatedConfig | None = None

    @model_validator(mode="after")
    def _federated(self) -> DiagnosisSection:
        if (self.group is None) != (self.federated is None):
            raise ValueError("diagnosis: federated needs a group and a group needs federated")
        return self


class Config(_Section):
    agent: AgentSection = AgentSection()
    mqtt: MqttSection = MqttSection()
    sensors: SensorsSection = SensorsSection()
    features: FeaturesSection = FeaturesSection()
    storage: StorageSection = StorageSection()
    model: ModelSection = ModelSection()
    security: SecuritySection = SecuritySection()
    intents: IntentsSection = IntentsSection()
    metrics: MetricsSection = MetricsSection()
    web: WebSection | None = None  # null: no dashboard
    homeassistant: HomeAssistantSection = HomeAssistantSection()
    service: ServiceSection = ServiceSection()
    policies: list[PolicyConfig] = Field(default_factory=list)
    interlocks: list[InterlockConfig] = Field(default_factory=list)
    diagnosis: DiagnosisSection = DiagnosisSection()

    @model_validator(mode="after")
    def _safe_actions(self) -> Config:
        policies = {p.name: p for p in self.policies}
        for name, action in self.diagnosis.safe_actions.items():
            if name not in policies:
                raise ValueError(f"diagnosis.safe_actions: no policy named {name!r}")
            actions = policies[name].actuators[0].actions
            if action != "hold" and action not in actions:
                raise ValueError(f"diagnosis.safe_actions.{name}: {action!r} is not hold nor one "
                                 f"of {actions}")
        return self

    @model_validator(mode="after")
    def _diagnosis_group(self) -> Config:
        group = self.diagnosis.group
        if group is not None and group not in {p.peers.group for p in self.policies if p.peers}:
            raise ValueError(f"diagnosis.group: {group!r} is the peer group of no policy (the "
                             f"members of a group are the agents whose policies name it)")
        return self

    @model_validator(mode="after")
    def _unique_policies(self) -> Config:
        names = [p.name for p in self.policies]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"policy names must be unique, repeated: {', '.join(dupes)}")
        return self

    @property
    def db_path(self) -> Path:
        return self.agent.data_dir / "edge-agent.db"


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false, so that ``actions: [on, off]`` stays words."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(
        r"^(?:true|True|TRUE|false|"
        r"False|FALSE)$"
    ),
    list("tTfF"),
)


def read_yaml(text: str) -> Any:
    """YAML as the agent reads it (only true/false are booleans); raises yaml.YAMLError."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass


def format_loc(loc: tuple[int | str, ...]) -> str:
    """``('policies', 0, 'actuators')`` -> ``policies[0].actuators``."""
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker for an error in a mapping's key
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line in the YAML source of the deepest node on ``loc`` that exists."""
    line = None if node is None else node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
        else:
            break
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


def validation_errors(exc: ValidationError, tree: yaml.Node | None) -> list[str]:
    """Every error of a pydantic validation as ``path: message (line N)``."""
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and
                                                   p.startswith(("function-", "tagged-"))))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            msg = "unknown key"
        line = _line_of(tree, loc)
        out.append(f"{format_loc(loc) or '(top level)'}: {msg}" +
                   (f" (line {line})" if line else ""))
    return out


M = TypeVar("M", bound=BaseModel)


def validate_yaml(model: type[M], text: str, source: str,
                  error: type[ConfigError] = ConfigError) -> M:
    """YAML text -> ``model``, or ``error`` listing every problem with its path and line."""
    try:
        tree = yaml.compose(text, Loader=_Loader)
        data: Any = read_yaml(text)
    except yaml.YAMLError as exc:
        raise error([f"{source}: not valid YAML: {exc}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise error([f"{source}: the top level must be a mapping of sections"])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(validation_errors(exc, tree)) from None


def parse_config(text: str, source: str = "<config>") -> Config:
    """Validate YAML text; raise :class:`ConfigError` with every problem and its path."""
    return validate_yaml(Config, text, source)


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    return parse_config(text, str(path))
