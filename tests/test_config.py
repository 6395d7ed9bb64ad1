"""The configuration file: the example and SPEC 9 validate; every error comes with its path."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from agent.config import (
    Config,
    format_loc,
    load_config,
    parse_config,
    parse_duration,
    parse_size,
)
from agent.errors import AgentError, ConfigError

EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "config" / "agent.example.yaml"

# Copied verbatim from SPEC.md section 9 (the documented keys).
SPEC_9_YAML = """\
agent:
  id: pi-livingroom                # default: host name
  data_dir: /var/lib/edge-agent    # SQLite database and downloaded models live here
  status_interval: 30s
mqtt:
  host: 127.0.0.1
  port: 1883
  prefix: edge
  protocol: 5                      # 5 or 3.1.1
  username: null
  password_file: null
  tls: {ca_file: null, cert_file: null, key_file: null}
  subscriptions: ["edge/sensors/#"]
  max_payload_bytes: 4096
sensors:                           # preprocessing, keyed by the topic's {quantity}
  temperature:
    unit: C
    range: [-40, 85]               # plausible values; outside -> rejected
    outlier: {window: 7, sigmas: 3}
    smooth: {ewma: 0.3}
    deadband: 0.05
model:
  path: bundled:smollm2-135m       # or the path of any .gguf file
  threads: 2
  context: 2048
security:
  command_key_file: /etc/edge-agent/command.key
policies:
  - name: climate
    every: 30s
    inputs: [livingroom-1/temperature, livingroom-1/humidity]   # {device}/{quantity}
    targets: {livingroom-1/temperature: [20, 24]}   # the band each input is kept inside
    goal: "Keep the living room between 20 and 24 C."   # optional words for the model
    engine: embed                  # embed (model embedding + learned head), llm or rules
    min_accuracy: 0.9              # fitness gate: below it, the policy runs on rules
    actuators:
      - device: livingroom-hvac
        actuator: hvac
        name: living room air conditioning      # optional, for intents
        aliases: [living room ac, lounge climate]
        actions: [cool, heat, off]
        value: {min: 16, max: 28}
    peers: {group: livingroom, method: mean, quorum: 1, deadline: 5s}
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value.errors


# -- the documented examples ------------------------------------------------------------------


def test_example_config_validates() -> None:
    config = load_config(EXAMPLE_CONFIG)
    assert config.agent.id == "pi-livingroom"
    assert config.agent.data_dir == Path("/var/lib/edge-agent")
    assert config.agent.status_interval == 30.0
    assert config.mqtt.protocol == "5"
    assert config.mqtt.topic_filters == ["edge/sensors/#"]
    assert config.mqtt.max_payload_bytes == 4096
    assert config.mqtt.session_expiry == 7 * 86400.0
    assert (config.mqtt.reconnect.min_delay, config.mqtt.reconnect.max_delay) == (1.0, 60.0)
    assert sorted(config.sensors) == ["co2", "humidity", "temperature"]
    temperature = config.sensors["temperature"]
    assert (temperature.unit, temperature.range, temperature.deadband) == ("C", (-40.0, 85.0), 0.05)
    assert temperature.outlier is not None
    assert temperature.outlier.min_deviation == 0.2
    assert temperature.normalize.range == (10.0, 35.0)
    assert config.sensors["humidity"].unit == "%"
    assert config.sensors["co2"].normalize.method == "zscore"
    assert config.features.windows == [60.0, 300.0, 900.0]
    assert config.storage.batch_interval == 0.2
    assert config.storage.retention.max_age == 30 * 86400.0
    assert config.storage.retention.max_size == 10**9
    assert config.storage.retention.every == 600.0
    assert config.security.command_key_file == Path("/etc/edge-agent/command.key")
    assert len(config.interlocks) == 1
    assert [p.name for p in config.policies] == ["climate"]
    assert config.policies[0].actuators[0].actions == ["cool", "heat", "off"]
    assert config.db_path == Path("/var/lib/edge-agent/edge-agent.db")


def test_spec_9_example_validates() -> None:
    config = parse_config(SPEC_9_YAML)
    assert config.agent.id == "pi-livingroom"
    assert config.mqtt.protocol == "5"
    assert config.mqtt.tls.enabled is False
    assert config.model.threads == 2
    assert config.security.command_key_file == Path("/etc/edge-agent/command.key")
    policy = config.policies[0]
    assert policy.inputs == ["livingroom-1/temperature", "livingroom-1/humidity"]
    assert policy.targets == {"livingroom-1/temperature": (20.0, 24.0)}
    assert policy.every == 30.0
    actuator = policy.actuators[0]
    assert actuator.aliases == ["living room ac", "lounge climate"]
    assert actuator.actions == ["cool", "heat", "off"]
    assert actuator.value is not None
    assert (actuator.value.min, actuator.value.max) == (16.0, 28.0)
    assert policy.peers is not None
    assert (
        policy.peers.group,
        policy.peers.method,
        policy.peers.quorum,
        policy.peers.deadline,
    ) == ("livingroom", "mean", 1, 5.0)


def test_empty_file_gives_the_defaults() -> None:
    for text in ("", "# nothing\n", "{}"):
        config = parse_config(text)
        assert config == Config()
    config = Config()
    assert config.agent.id == socket.gethostname()
    assert config.mqtt.topic_filters == ["edge/sensors/#"]
    assert config.features.windows == [60.0, 300.0, 900.0]
    assert config.storage.synchronous == "full"
    assert dict(config.sensors.items()) == {} and not config.sensors.strict
    assert config.policies == []


def test_default_subscription_follows_the_prefix() -> None:
    assert parse_config("mqtt: {prefix: home}").mqtt.topic_filters == ["home/sensors/#"]


def test_config_is_frozen() -> None:
    config = parse_config("")
    with pytest.raises(ValidationError):
        config.mqtt.port = 1884  # type: ignore[misc]


def test_data_dir_expands_the_home_directory() -> None:
    config = parse_config("agent: {data_dir: ~/edge}")
    assert config.agent.data_dir == Path.home() / "edge"
    assert config.db_path == Path.home() / "edge" / "edge-agent.db"


# -- unknown keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("bogus: 1", "bogus: unknown key (line 1)"),
        ("mqtt:\n  host: a\n  hots: b\n", "mqtt.hots: unknown key (line 3)"),
        ("mqtt:\n  tls:\n    ca: /x\n", "mqtt.tls.ca: unknown key (line 3)"),
        (
            "sensors:\n  temperature:\n    units: C\n",
            "sensors.temperature.units: unknown key (line 3)",
        ),
        (
            "policies:\n  - name: p\n    inputs: [a/b]\n    actuators:\n"
            "      - {device: d, actuator: a, actions: [on], colour: red}\n",
            "policies[0].actuators[0].colour: unknown key (line 5)",
        ),
    ],
)
def test_unknown_keys_are_errors_with_their_path(text: str, error: str) -> None:
    assert errors_of(text) == [error]


# -- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("7d", 604800.0),
        ("1.5h", 5400.0),
        ("0.25s", 0.25),
        (" 10 s ", 10.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("30", "duration must be a number and a unit (ms, s, m, h, d), got '30'"),
        ("", "duration must be a number and a unit (ms, s, m, h, d), got ''"),
        ("s", "duration must be a number and a unit (ms, s, m, h, d), got 's'"),
        ("-5s", "duration must be a number and a unit (ms, s, m, h, d), got '-5s'"),
        ("5 minutes", "duration must be a number and a unit (ms, s, m, h, d), got '5 minutes'"),
        ("5S", "duration must be a number and a unit (ms, s, m, h, d), got '5S'"),
        ("1e3s", "duration must be a number and a unit (ms, s, m, h, d), got '1e3s'"),
        ("1w", "duration must be a number and a unit (ms, s, m, h, d), got '1w'"),
        ("5m30s", "duration must be a number and a unit (ms, s, m, h, d), got '5m30s'"),
        ("0s", "duration must be greater than 0, got '0s'"),
        (30, 'duration must be a string like "30s", got 30'),
        (0.5, 'duration must be a string like "30s", got 0.5'),
        (True, 'duration must be a string like "30s", got True'),
        (None, 'duration must be a string like "30s", got None'),
    ],
)
def test_bad_durations(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert str(info.value) == message


def test_durations_in_the_file() -> None:
    config = parse_config(
        "agent: {status_interval: 500ms}\nstorage: {batch_interval: 2h}\n"
        "features: {windows: [30s, 5m, 7d]}\n"
    )
    assert config.agent.status_interval == 0.5
    assert config.storage.batch_interval == 7200.0
    assert config.features.windows == [30.0, 300.0, 604800.0]


def test_bad_durations_in_the_file() -> None:
    assert errors_of("agent:\n  status_interval: 30\nfeatures:\n  windows: [1m, 5x]\n") == [
        'agent.status_interval: duration must be a string like "30s", got 30 (line 2)',
        "features.windows[1]: duration must be a number and a unit (ms, s, m, h, d), "
        "got '5x' (line 4)",
    ]


def test_null_max_age_keeps_everything() -> None:
    retention = parse_config(
        "storage: {retention: {max_age: null, max_size: null}}"
    ).storage.retention
    assert (retention.max_age, retention.max_size) == (None, None)


# -- sizes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("500B", 500),
        ("500MB", 500_000_000),
        ("1GB", 1_000_000_000),
        ("10KB", 10_000),
        ("2GiB", 2 * 1024**3),
        ("1.5KiB", 1536),
        ("64MiB", 64 * 1024**2),
        (" 3 MB ", 3_000_000),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("500", "size must be a number and a unit (B, KB, MB, GB, KiB, MiB, GiB), got '500'"),
        ("500mb", "size must be a number and a unit (B, KB, MB, GB, KiB, MiB, GiB), got '500mb'"),
        ("1TB", "size must be a number and a unit (B, KB, MB, GB, KiB, MiB, GiB), got '1TB'"),
        ("-1MB", "size must be a number and a unit (B, KB, MB, GB, KiB, MiB, GiB), got '-1MB'"),
        (500, 'size must be a string like "500MB", got 500'),
        (False, 'size must be a string like "500MB", got False'),
    ],
)
def test_bad_sizes(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_size(value)
    assert str(info.value) == message


def test_size_in_the_file() -> None:
    assert parse_config("storage: {retention: {max_size: 2GiB}}").storage.retention.max_size == (
        2 * 1024**3
    )
    assert errors_of("storage:\n  retention:\n    max_size: 1024\n") == [
        'storage.retention.max_size: size must be a string like "500MB", got 1024 (line 3)'
    ]


# -- YAML booleans ----------------------------------------------------------------------------

POLICY_WITH_ACTIONS = """\
policies:
  - name: lights
    inputs: [hall-1/motion]
    actuators:
      - device: hall-light
        actuator: light
        actions: {actions}
"""


def test_on_and_off_stay_words_in_actions() -> None:
    config = parse_config(POLICY_WITH_ACTIONS.format(actions="[on, off, yes, no, On, OFF, y, n]"))
    assert config.policies[0].actuators[0].actions == [
        "on",
        "off",
        "yes",
        "no",
        "On",
        "OFF",
        "y",
        "n",
    ]


def test_true_and_false_are_still_booleans() -> None:
    assert errors_of(POLICY_WITH_ACTIONS.format(actions="[cool, false]")) == [
        "policies[0].actuators[0].actions[1]: must be a string, got False (line 7)"
    ]


def test_the_yaml_module_is_left_alone() -> None:
    assert yaml.safe_load("[on, off, yes]") == [True, False, True]


# -- protocol ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "protocol"),
    [
        ("5", "5"),
        ("'5'", "5"),
        ("5.0", "5"),
        ("3.1.1", "3.1.1"),
        ("'3.1.1'", "3.1.1"),
        ("311", "3.1.1"),
    ],
)
def test_protocol(value: str, protocol: str) -> None:
    assert parse_config(f"mqtt:\n  protocol: {value}\n").mqtt.protocol == protocol


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("4", "4"),
        ("3.1", "3.1"),
        ("'3'", "'3'"),
        ("v5", "'v5'"),
        ("null", "None"),
        ("mqttv5", "'mqttv5'"),
    ],
)
def test_bad_protocol(value: str, shown: str) -> None:
    assert errors_of(f"mqtt:\n  protocol: {value}\n") == [
        f"mqtt.protocol: MQTT protocol must be 5 or 3.1.1, got {shown} (line 2)"
    ]


# -- every error, with its path and line --------------------------------------------------------

MANY_ERRORS = """\
agent:
  id: pi-1
  status_interval: 30
mqtt:
  protocol: 4
  bogus: true
sensors:
  temperature:
    unit: C
    range: [85, -40]
    smooth: {ewma: 0.3, median: 3}
    extra: 1
storage:
  retention:
    max_size: 500mb
policies:
  - name: climate
    inputs: [livingroom-1/temperature]
    actuators:
      - device: livingroom-hvac
        actuator: hvac
        actions: [cool, heat, off]
        value: {min: 28, max: 16}
      - device: fan
        actuator: fan
        actions: []
"""


def test_every_error_is_collected_with_its_path_and_line() -> None:
    assert errors_of(MANY_ERRORS) == [
        'agent.status_interval: duration must be a string like "30s", got 30 (line 3)',
        "mqtt.protocol: MQTT protocol must be 5 or 3.1.1, got 4 (line 5)",
        "mqtt.bogus: unknown key (line 6)",
        "sensors.temperature.range: range must be [low, high] with low < high, "
        "got [85.0, -40.0] (line 10)",
        "sensors.temperature.smooth: give exactly one of ewma (a weight in (0, 1]) or median "
        "(a window length) (line 11)",
        "sensors.temperature.extra: unknown key (line 12)",
        "storage.retention.max_size: size must be a number and a unit (B, KB, MB, GB, KiB, "
        "MiB, GiB), got '500mb' (line 15)",
        "policies[0].actuators[0].value: value range must be [low, high] with low < high, "
        "got [28.0, 16.0] (line 23)",
        "policies[0].actuators[1].actions: List should have at least 1 item after validation, "
        "not 0 (line 26)",
    ]


def test_config_error_joins_its_errors() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(MANY_ERRORS)
    assert str(info.value) == "\n".join(info.value.errors)
    assert isinstance(info.value, AgentError)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "mqtt:\n  port: 70000\n",
            "mqtt.port: Input should be less than or equal to 65535 (line 2)",
        ),
        (
            "mqtt:\n  max_payload_bytes: 8\n",
            "mqtt.max_payload_bytes: Input should be greater than or equal to 16 (line 2)",
        ),
        (
            "mqtt:\n  tls: {cert_file: /etc/c.pem}\n",
            "mqtt.tls: cert_file and key_file must be given together (line 2)",
        ),
        (
            "mqtt:\n  subscriptions: ['edge/#/x']\n",
            "mqtt.subscriptions: invalid topic filter 'edge/#/x' (line 2)",
        ),
        (
            "mqtt:\n  subscriptions: ['edge/a#']\n",
            "mqtt.subscriptions: invalid topic filter 'edge/a#' (line 2)",
        ),
        (
            "agent:\n  id: pi 1\n",
            "agent.id: must be one MQTT topic level without '/', '+', '#' or spaces, "
            "got 'pi 1' (line 2)",
        ),
        (
            "mqtt:\n  prefix: edge/x\n",
            "mqtt.prefix: must be one MQTT topic level without '/', '+', '#' or spaces, "
            "got 'edge/x' (line 2)",
        ),
        (
            "agent:\n  log_level: TRACE\n",
            "agent.log_level: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR' (line 2)",
        ),
        (
            "sensors:\n  co2:\n    unit: furlongs\n",
            "sensors.co2.unit: unknown unit 'furlongs' (line 3)",
        ),
        (
            "sensors:\n  t:\n    range: [.nan, 1]\n",
            "sensors.t.range: range must be finite numbers, got [nan, 1.0] (line 3)",
        ),
        (
            "sensors:\n  t:\n    smooth: {}\n",
            "sensors.t.smooth: give exactly one of ewma (a weight in (0, 1]) or median "
            "(a window length) (line 3)",
        ),
        (
            "sensors:\n  t:\n    outlier: {window: 2}\n",
            "sensors.t.outlier.window: Input should be greater than or equal to 3 (line 3)",
        ),
        (
            "features:\n  windows: []\n",
            "features.windows: List should have at least 1 item after validation, not 0 (line 2)",
        ),
        (
            "mqtt: [1]\n",
            "mqtt: Input should be a valid dictionary or instance of MqttSection (line 1)",
        ),
    ],
)
def test_single_errors(text: str, error: str) -> None:
    assert errors_of(text) == [error]


def test_sensor_keys_must_be_topic_levels() -> None:
    [error] = errors_of("sensors:\n  temp/erature: {unit: C}\n")
    assert error.startswith("sensors.temp/erature")
    assert error.endswith(
        ": must be one MQTT topic level without '/', '+', '#' or spaces, "
        "got 'temp/erature' (line 2)"
    )


POLICY = """\
policies:
  - name: {name}
    inputs: {inputs}
    targets: {targets}
    actuators:
      - {{device: d, actuator: a, actions: [on, off]}}
"""


def test_policy_inputs_are_device_slash_quantity() -> None:
    assert errors_of(POLICY.format(name="p", inputs="[a/b, x, a/b/c]", targets="{}")) == [
        "policies[0].inputs: inputs are written device/quantity, got 'x' (line 3)"
    ]


def test_policy_targets_must_be_inputs() -> None:
    assert errors_of(POLICY.format(name="p", inputs="[a/b]", targets="{c/d: [1, 2]}")) == [
        "policies[0]: target 'c/d' is not one of the policy's inputs (line 2)"
    ]
    assert errors_of(POLICY.format(name="p", inputs="[a/b]", targets="{a/b: [3, 1]}")) == [
        "policies[0]: target band of a/b must be [low, high] with low < high, got [3.0, 1.0] "
        "(line 2)"
    ]


def test_policy_names_are_unique() -> None:
    one = POLICY.format(name="p", inputs="[a/b]", targets="{}")
    two = one + one.split("\n", 1)[1]
    assert errors_of(two) == ["(top level): policy names must be unique, repeated: p (line 1)"]


# -- files and YAML -----------------------------------------------------------------------------


def test_not_yaml() -> None:
    [error] = errors_of("x: [1, 2")
    assert error.startswith("<config>: not valid YAML: while parsing a flow sequence")


def test_more_than_one_document() -> None:
    [error] = errors_of("a: 1\n---\nb: 2\n")
    assert error.startswith("<config>: not valid YAML: expected a single document")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just words", "42"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    assert errors_of(text) == ["<config>: the top level must be a mapping of sections"]


def test_load_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("mqtt: {port: [\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [error] = info.value.errors
    assert error.startswith(f"{path}: not valid YAML:")


def test_load_config_of_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [error] = info.value.errors
    assert error.startswith(f"{path}: cannot read: ")
    assert "No such file or directory" in error


def test_load_config_of_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("agent: {id: caf\u00e9}\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.errors[0].startswith(f"{path}: cannot read: ")


def test_load_config_accepts_a_string_path() -> None:
    assert load_config(str(EXAMPLE_CONFIG)).agent.id == "pi-livingroom"


# -- small parts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loc", "text"),
    [
        ((), ""),
        (("mqtt",), "mqtt"),
        (("mqtt", "tls", "ca_file"), "mqtt.tls.ca_file"),
        (("policies", 0, "actuators", 1, "value"), "policies[0].actuators[1].value"),
        (("features", "windows", 2), "features.windows[2]"),
    ],
)
def test_format_loc(loc: tuple[int | str, ...], text: str) -> None:
    assert format_loc(loc) == text


def test_password_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_AGENT_MQTT_PASSWORD", "from-env")
    secret = tmp_path / "password"
    secret.write_text("s3cret \n", encoding="utf-8")
    config = parse_config(f"mqtt: {{password_file: {secret}}}")
    assert config.mqtt.password() == "s3cret "


def test_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_AGENT_MQTT_PASSWORD", "from-env")
    assert parse_config("").mqtt.password() == "from-env"
    monkeypatch.delenv("EDGE_AGENT_MQTT_PASSWORD")
    assert parse_config("").mqtt.password() is None


def test_tls_is_enabled_by_a_ca_or_a_client_certificate() -> None:
    assert parse_config("mqtt: {tls: {ca_file: /etc/ca.pem}}").mqtt.tls.enabled is True
    assert parse_config("mqtt: {tls: {cert_file: /c, key_file: /k}}").mqtt.tls.enabled is True
    assert parse_config("").mqtt.tls.enabled is False


FEDERATED = """
policies:
  - name: climate
    inputs: [room-1/temperature]
    targets: {{room-1/temperature: [20, 24]}}
    engine: {engine}
    actuators:
      - {{device: hvac-1, actuator: hvac, actions: [cool, heat, off]}}
    peers:
      group: house
      federated: {federated}
"""


def test_federated_learning_settings() -> None:
    config = parse_config(FEDERATED.format(
        engine="embed", federated="{every: 12h, secure: true, min_members: 3, "
        "dp: {clip: 1.0, sigma: 0.5}}"))
    peers = config.policies[0].peers
    assert peers is not None and peers.federated is not None
    fed = peers.federated
    assert (fed.every, fed.rounds, fed.secure, fed.min_members) == (43200.0, 10, True, 3)
    assert fed.dp is not None and (fed.dp.clip, fed.dp.sigma) == (1.0, 0.5)


@pytest.mark.parametrize(
    ("engine", "federated", "error"),
    [
        ("llm", "{}", "policies[0]: peers.federated trains the embed engine's head; set engine: "
         "embed (line 3)"),
        ("embed", "{secure: true}", "policies[0].peers.federated: secure aggregation needs "
         "min_members >= 3 (with two members the leader could subtract its own update from "
         "the sum) (line 11)"),
        ("embed", "{dp: {clip: 0, sigma: 1}}", "policies[0].peers.federated.dp.clip: Input "
         "should be greater than 0 (line 11)"),
        ("embed", "{rounds: 0}", "policies[0].peers.federated.rounds: Input should be greater "
         "than or equal to 1 (line 11)"),
    ],
)
def test_bad_federated_learning_settings(engine: str, federated: str, error: str) -> None:
    assert errors_of(FEDERATED.format(engine=engine, federated=federated)) == [error]
