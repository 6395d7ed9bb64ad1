"""SPEC 1: one MQTT message -> a Reading, or a RejectedReading with a one-line reason."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import load_config
from agent.errors import AgentError, RejectedReading
from agent.pipeline.core import Pipeline
from agent.pipeline.parse import (
    SEQ_MAX,
    TS_MAX_AHEAD,
    TS_MIN,
    Reading,
    decode,
    excerpt,
    parse_reading,
    split_topic,
)
from tests.payloads import BAD_PAYLOADS, MAX_PAYLOAD_BYTES, TOPIC

EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "config" / "agent.example.yaml"
NOW = 1_764_370_000.0  # 2025-11-28T22:46:40Z, the agent's clock in these tests


def parse(
    payload: bytes, topic: str = TOPIC, recv_ts: float = NOW, max_bytes: int = MAX_PAYLOAD_BYTES
) -> Reading:
    return parse_reading(topic, payload, recv_ts, prefix="edge", max_bytes=max_bytes)


def rejection(
    payload: bytes, topic: str = TOPIC, recv_ts: float = NOW, max_bytes: int = MAX_PAYLOAD_BYTES
) -> str:
    with pytest.raises(RejectedReading) as info:
        parse(payload, topic, recv_ts, max_bytes)
    return str(info.value)


# -- accepted forms -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "value"),
    [
        (b"23.4", 23.4),
        (b"-7", -7.0),
        (b"0", 0.0),
        (b"  21.25\n", 21.25),
        (b"1e2", 100.0),
        (b"-0.5E-1", -0.05),
    ],
)
def test_bare_number(payload: bytes, value: float) -> None:
    assert parse(payload) == Reading("dev-1", "temperature", value, None, NOW, None, None, NOW)


def test_bare_integer_becomes_float() -> None:
    reading = parse(b"23")
    assert reading.value == 23.0
    assert type(reading.value) is float


def test_full_json_object() -> None:
    payload = b'{"value": 23.4, "ts": 1764369990.25, "seq": 1042, "unit": "C"}'
    assert parse(payload) == Reading(
        "dev-1", "temperature", 23.4, "C", 1764369990.25, 1764369990.25, 1042, NOW
    )


def test_object_with_only_value_takes_receive_time() -> None:
    assert parse(b'{"value": 21}') == Reading(
        "dev-1", "temperature", 21.0, None, NOW, None, None, NOW
    )


def test_integer_ts_is_accepted_as_float() -> None:
    reading = parse(b'{"value": 21, "ts": 1764369990}')
    assert reading.ts == 1764369990.0
    assert reading.sent_ts == 1764369990.0
    assert type(reading.sent_ts) is float


def test_null_optional_fields_count_as_absent() -> None:
    reading = parse(b'{"value": 21.5, "ts": null, "seq": null, "unit": null}')
    assert reading == Reading("dev-1", "temperature", 21.5, None, NOW, None, None, NOW)


def test_unknown_keys_are_ignored() -> None:
    reading = parse(b'{"value": 21.5, "battery": 87, "fw": "1.2.3", "extra": {"a": [1]}}')
    assert reading == Reading("dev-1", "temperature", 21.5, None, NOW, None, None, NOW)


def test_unit_is_kept_as_sent() -> None:
    assert parse('{"value": 70, "unit": "°F"}'.encode()).unit == "°F"
    assert parse(b'{"value": 70, "unit": "abcdefghijklmnop"}').unit == "abcdefghijklmnop"


def test_other_topics_and_prefixes() -> None:
    reading = parse_reading("home/sensors/kitchen-2/co2", b"612", NOW, prefix="home", max_bytes=64)
    assert (reading.device, reading.quantity, reading.value) == ("kitchen-2", "co2", 612.0)


# -- ts ---------------------------------------------------------------------------------------


def test_ts_lower_bound_is_2000_01_01_inclusive() -> None:
    assert TS_MIN == 946_684_800.0
    assert parse(b'{"value": 1, "ts": 946684800}').ts == TS_MIN
    assert rejection(b'{"value": 1, "ts": 946684799.999}') == (
        "ts 946684799.999 is not between 2000-01-01 and one day ahead"
    )


def test_ts_upper_bound_is_one_day_ahead_of_the_receive_clock() -> None:
    assert TS_MAX_AHEAD == 86_400.0
    limit = NOW + 86_400
    assert parse(f'{{"value": 1, "ts": {limit}}}'.encode()).ts == limit
    assert rejection(f'{{"value": 1, "ts": {limit + 0.5}}}'.encode()) == (
        f"ts {limit + 0.5} is not between 2000-01-01 and one day ahead"
    )


def test_ts_ahead_is_judged_against_the_given_clock() -> None:
    payload = f'{{"value": 1, "ts": {NOW + 2 * 86_400}}}'.encode()
    assert "not between" in rejection(payload, recv_ts=NOW)
    assert parse(payload, recv_ts=NOW + 86_400).ts == NOW + 2 * 86_400


def test_ts_in_the_past_is_fine() -> None:
    assert parse(b'{"value": 1, "ts": 1000000000}').ts == 1_000_000_000.0


# -- seq --------------------------------------------------------------------------------------


def test_seq_bounds() -> None:
    assert SEQ_MAX == 2**63 - 1
    assert parse(b'{"value": 1, "seq": 0}').seq == 0
    assert parse(f'{{"value": 1, "seq": {2**63 - 1}}}'.encode()).seq == 2**63 - 1
    assert rejection(f'{{"value": 1, "seq": {2**63}}}'.encode()) == (
        f"seq must be between 0 and 2^63-1, got {2**63}"
    )
    assert rejection(b'{"value": 1, "seq": -5}') == "seq must be between 0 and 2^63-1, got -5"


def test_seq_in_exponent_form_is_a_float() -> None:
    assert rejection(b'{"value": 1, "seq": 1e3}') == "seq must be an integer, got float"


# -- size, encoding, emptiness ----------------------------------------------------------------


def test_payload_of_exactly_max_bytes_is_accepted() -> None:
    payload = b"21.5" + b" " * 60
    assert len(payload) == 64
    assert parse(payload, max_bytes=64).value == 21.5
    assert rejection(payload + b" ", max_bytes=64) == (
        "payload of 65 bytes exceeds max_payload_bytes (64)"
    )


def test_size_is_counted_in_bytes_not_characters() -> None:
    payload = '{"value": 1, "unit": "°C"}'.encode()
    assert len(payload) == 27  # 26 characters
    assert rejection(payload, max_bytes=26) == (
        "payload of 27 bytes exceeds max_payload_bytes (26)"
    )
    assert parse(payload, max_bytes=27).unit == "°C"


def test_size_is_checked_before_anything_else() -> None:
    assert rejection(b"\xff" * 10, max_bytes=8) == (
        "payload of 10 bytes exceeds max_payload_bytes (8)"
    )


@pytest.mark.parametrize("payload", [b"", b" ", b"\n", b"\t\r\n  "])
def test_empty_payload(payload: bytes) -> None:
    assert rejection(payload) == "payload is empty"


@pytest.mark.parametrize("payload", [b"\x80", b"2\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])
def test_bad_utf8(payload: bytes) -> None:
    assert rejection(payload) == "payload is not valid UTF-8"


# -- nesting, duplicates, constants -----------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 10_000,
        b"[" * 10_000 + b"]" * 10_000,
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        b'{"value": 1, "x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
    ],
    ids=["open-arrays", "balanced-arrays", "objects", "inside-a-reading"],
)
def test_deep_nesting_is_rejected_not_a_crash(payload: bytes) -> None:
    assert rejection(payload, max_bytes=65_536) == "payload is nested too deeply"


def test_moderate_nesting_is_just_the_wrong_shape() -> None:
    assert rejection(b"[" * 50 + b"]" * 50) == (
        "payload must be a number or a JSON object, got array"
    )


def test_duplicate_keys_anywhere_are_rejected() -> None:
    assert rejection(b'{"value": 1, "ts": 1764369990, "ts": 1764369991}') == ("duplicate key 'ts'")
    assert rejection(b'{"value": 1, "meta": {"a": 1, "a": 2}}') == "duplicate key 'a'"


def with_field(field: str, literal: str) -> bytes:
    """A reading whose ``field`` is the raw JSON ``literal``."""
    if field == "value":
        return f'{{"value": {literal}, "seq": 1}}'.encode()
    return f'{{"value": 1, "{field}": {literal}}}'.encode()


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("field", ["value", "ts", "seq", "unit", "other"])
def test_non_finite_constants_anywhere(constant: str, field: str) -> None:
    assert rejection(with_field(field, constant)) == f"{constant} is not a valid number"


@pytest.mark.parametrize(("literal", "shown"), [("1e400", "inf"), ("-1e400", "-inf")])
@pytest.mark.parametrize("field", ["value", "ts"])
def test_float_overflow_is_not_finite(literal: str, shown: str, field: str) -> None:
    assert rejection(with_field(field, literal)) == f"{field} must be finite, got {shown}"


# -- topics -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "topic",
    [
        "edge/sensors/dev-1",
        "edge/sensors/dev-1/temperature/extra",
        "edge/sensors/dev-1/temperature/",
        "/edge/sensors/dev-1/temperature",
        "edge/sensors//temperature",
        "edge/sensors/dev-1/",
        "edge/sensor/dev-1/temperature",
        "other/sensors/dev-1/temperature",
        "EDGE/sensors/dev-1/temperature",
        "edge/actuators/dev-1/temperature",
        "",
    ],
)
def test_topic_shape_errors(topic: str) -> None:
    assert rejection(b"21.5", topic=topic) == "topic is not edge/sensors/{device}/{quantity}"


def test_topic_is_checked_before_the_payload() -> None:
    assert rejection(b"\xff", topic="edge/sensors/x") == (
        "topic is not edge/sensors/{device}/{quantity}"
    )


def test_split_topic() -> None:
    assert split_topic("edge/sensors/livingroom-1/temperature", "edge") == (
        "livingroom-1",
        "temperature",
    )
    with pytest.raises(RejectedReading, match=r"^topic is not p/sensors/\{device\}"):
        split_topic("edge/sensors/a/b", "p")


# -- decode -----------------------------------------------------------------------------------


def test_decode_returns_the_json_value() -> None:
    assert decode(b'{"a": [1, 2.5, "x", null, true]}', 100) == {"a": [1, 2.5, "x", None, True]}
    assert decode(b"7", 100) == 7


# -- the shared list of bad payloads ----------------------------------------------------------

REASONS: dict[str, tuple[str, str]] = {  # id -> (kind, reason)
    "empty": ("malformed", "payload is empty"),
    "whitespace-only": ("malformed", "payload is empty"),
    "bad-utf8": ("encoding", "payload is not valid UTF-8"),
    "bad-utf8-inside-json": ("encoding", "payload is not valid UTF-8"),
    "utf8-bom": ("malformed", "payload is not a number or JSON: Expecting value at char 0"),
    "oversized": ("too-large", "payload of 4100 bytes exceeds max_payload_bytes (4096)"),
    "plain-text": ("malformed", "payload is not a number or JSON: Expecting value at char 0"),
    "hex-number": ("malformed", "payload is not a number or JSON: Extra data at char 1"),
    "comma-decimal": ("malformed", "payload is not a number or JSON: Extra data at char 2"),
    "leading-dot": ("malformed", "payload is not a number or JSON: Expecting value at char 0"),
    "trailing-garbage": ("malformed", "payload is not a number or JSON: Extra data at char 16"),
    "truncated-object": (
        "malformed",
        "payload is not a number or JSON: Expecting ',' delimiter at char 14",
    ),
    "single-quoted-keys": (
        "malformed",
        "payload is not a number or JSON: Expecting property name enclosed in double quotes "
        "at char 1",
    ),
    "unquoted-key": (
        "malformed",
        "payload is not a number or JSON: Expecting property name enclosed in double quotes "
        "at char 1",
    ),
    "nested-4000-open-brackets": ("malformed", "payload is nested too deeply"),
    "nested-2000-balanced-brackets": ("malformed", "payload is nested too deeply"),
    "json-null": ("invalid", "payload must be a number or a JSON object, got null"),
    "json-true": ("invalid", "payload must be a number or a JSON object, got boolean"),
    "json-string": ("invalid", "payload must be a number or a JSON object, got string"),
    "json-array": ("invalid", "payload must be a number or a JSON object, got array"),
    "nan": ("invalid", "NaN is not a valid number"),
    "infinity": ("invalid", "Infinity is not a valid number"),
    "minus-infinity": ("invalid", "-Infinity is not a valid number"),
    "nan-in-object": ("invalid", "NaN is not a valid number"),
    "overflow-1e400": ("invalid", "value must be finite, got inf"),
    "overflow-minus-1e400-in-object": ("invalid", "value must be finite, got -inf"),
    "empty-object": ("invalid", "missing 'value'"),
    "missing-value": ("invalid", "missing 'value'"),
    "value-null": ("invalid", "value must be a number, got null"),
    "value-string": ("invalid", "value must be a number, got string"),
    "value-bool": ("invalid", "value must be a number, got boolean"),
    "value-array": ("invalid", "value must be a number, got array"),
    "value-object": ("invalid", "value must be a number, got object"),
    "duplicate-keys": ("malformed", "duplicate key 'value'"),
    "ts-string": ("invalid", "ts must be a number, got string"),
    "ts-bool": ("invalid", "ts must be a number, got boolean"),
    "ts-nan": ("invalid", "NaN is not a valid number"),
    "ts-zero": ("timestamp", "ts 0.0 is not between 2000-01-01 and one day ahead"),
    "ts-before-2000": ("timestamp", "ts 946684799.5 is not between 2000-01-01 and one day ahead"),
    "ts-year-2100": ("timestamp", "ts 4102444800.0 is not between 2000-01-01 and one day ahead"),
    "seq-negative": ("invalid", "seq must be between 0 and 2^63-1, got -1"),
    "seq-float": ("invalid", "seq must be an integer, got float"),
    "seq-integral-float": ("invalid", "seq must be an integer, got float"),
    "seq-2-pow-63": ("invalid", "seq must be between 0 and 2^63-1, got 9223372036854775808"),
    "seq-string": ("invalid", "seq must be an integer, got string"),
    "seq-bool": ("invalid", "seq must be an integer, got boolean"),
    "unit-number": ("invalid", "unit must be a string, got int"),
    "unit-empty": ("invalid", "unit must be 1 to 16 characters"),
    "unit-17-chars": ("invalid", "unit must be 1 to 16 characters"),
    "unit-unknown": ("unit", "unknown unit 'X'"),
    "unit-lone-surrogate": ("invalid", "unit must be valid Unicode (no lone surrogates)"),
    "int-400-digits": ("invalid", "value must be finite, got an integer too large"),
    "value-int-400-digits": ("invalid", "value must be finite, got an integer too large"),
    "ts-int-400-digits": ("invalid", "ts must be finite, got an integer too large"),
    "unit-wrong-family": ("unit", "unit '%' cannot be converted to 'C'"),
    "above-range": ("out-of-range", "value 85.5 C is outside the plausible range [-40, 85]"),
    "below-range": ("out-of-range", "value -40.1 C is outside the plausible range [-40, 85]"),
    "200-fahrenheit": ("out-of-range", "value 93.3333 C is outside the plausible range [-40, 85]"),
    "zero-kelvin": ("out-of-range", "value -273.15 C is outside the plausible range [-40, 85]"),
}
# Python 3.13's json parses deeper than the recursion limit allows before it: the same
# payloads are still rejected, for a different reason.
REASONS_SINCE_PY313: dict[str, str] = {
    "nested-4000-open-brackets": "payload is not a number or JSON: Expecting value at char 4000",
    "nested-2000-balanced-brackets": "payload must be a number or a JSON object, got array",
}


@pytest.fixture(scope="module")
def example_pipeline() -> Pipeline:
    return Pipeline(load_config(EXAMPLE_CONFIG))


def test_bad_payloads_are_many_distinct_and_all_explained() -> None:
    ids = [name for name, _ in BAD_PAYLOADS]
    assert len(ids) >= 25
    assert len(set(ids)) == len(ids)
    assert len({payload for _, payload in BAD_PAYLOADS}) == len(BAD_PAYLOADS)
    assert sorted(ids) == sorted(REASONS)


def test_example_config_matches_the_assumptions_of_bad_payloads() -> None:
    config = load_config(EXAMPLE_CONFIG)
    assert config.mqtt.prefix == "edge"
    assert config.mqtt.max_payload_bytes == MAX_PAYLOAD_BYTES
    assert config.sensors["temperature"].unit == "C"
    assert config.sensors["temperature"].range == (-40.0, 85.0)


@pytest.mark.parametrize(("name", "payload"), BAD_PAYLOADS, ids=[n for n, _ in BAD_PAYLOADS])
@pytest.mark.parametrize("recv_ts", [NOW, 4_102_358_399.0], ids=["2025", "2099-12-30"])
def test_bad_payload_is_rejected(
    example_pipeline: Pipeline, name: str, payload: bytes, recv_ts: float
) -> None:
    with pytest.raises(RejectedReading) as info:
        reading = parse_reading(TOPIC, payload, recv_ts, prefix="edge", max_bytes=MAX_PAYLOAD_BYTES)
        example_pipeline.convert(reading)
    kind, expected = REASONS[name]
    reason = str(info.value)
    assert reason in (expected, REASONS_SINCE_PY313.get(name))
    assert info.value.kind == kind
    assert "\n" not in reason
    assert len(reason) <= 200


def test_unit_with_lone_surrogate_is_rejected() -> None:
    with pytest.raises(RejectedReading):
        parse(b'{"value": 21.5, "unit": "\\ud800"}', topic="edge/sensors/dev-1/noise")


@pytest.mark.parametrize(
    ("topic", "payload", "kind"),
    [
        ("edge/sensors/x", b"21.5", "topic"),
        (TOPIC, b"1" * 5000, "too-large"),
        (TOPIC, b"\xff", "encoding"),
        (TOPIC, b"{", "malformed"),
        (TOPIC, b"", "malformed"),
        (TOPIC, b'{"value": 1, "value": 1}', "malformed"),
        (TOPIC, b"[" * 4000, "malformed"),
        (TOPIC, b"NaN", "invalid"),
        (TOPIC, b'{"value": "1"}', "invalid"),
        (TOPIC, b'{"value": 1, "seq": -1}', "invalid"),
        (TOPIC, b'{"value": 1, "unit": ""}', "invalid"),
        (TOPIC, b'{"value": 1, "ts": 1}', "timestamp"),
    ],
)
def test_rejection_kind_labels_the_reason(topic: str, payload: bytes, kind: str) -> None:
    with pytest.raises(RejectedReading) as info:
        parse(payload, topic=topic)
    assert info.value.kind == kind


def test_rejected_reading_is_an_agent_error() -> None:
    assert issubclass(RejectedReading, AgentError)


# -- properties -------------------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=100, deadline=None)
@given(finite)
def test_any_finite_float_round_trips_bare(x: float) -> None:
    assert parse(json.dumps(x).encode()).value == x


@settings(max_examples=100, deadline=None)
@given(
    x=finite,
    seq=st.integers(0, SEQ_MAX),
    ts=st.floats(TS_MIN, NOW + TS_MAX_AHEAD),
    unit=st.text(min_size=1, max_size=16).filter(lambda u: u.isprintable()),
)
def test_any_valid_object_round_trips(x: float, seq: int, ts: float, unit: str) -> None:
    payload = json.dumps({"value": x, "ts": ts, "seq": seq, "unit": unit}).encode()
    reading = parse(payload, max_bytes=10_000)
    assert (reading.value, reading.ts, reading.sent_ts, reading.seq, reading.unit) == (
        x,
        ts,
        ts,
        seq,
        unit,
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**80), 2**80) | finite | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["value", "ts", "seq", "unit", "x"]), inner, max_size=5)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_any_json_value_parses_or_is_rejected(data: object) -> None:
    payload = json.dumps(data).encode()
    try:
        reading = parse(payload, max_bytes=10_000)
    except RejectedReading as exc:
        assert "\n" not in str(exc)
        return
    assert math.isfinite(reading.value)
    assert reading.seq is None or 0 <= reading.seq <= SEQ_MAX


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_parse_or_are_rejected(payload: bytes) -> None:
    try:
        reading = parse(payload)
    except RejectedReading as exc:
        assert "\n" not in str(exc)
        return
    assert math.isfinite(reading.value)


# -- excerpt ----------------------------------------------------------------------------------


def test_excerpt_of_a_short_payload_is_the_text() -> None:
    assert excerpt(b'{"value": 1}') == '{"value": 1}'
    assert excerpt(b"") == ""


def test_excerpt_keeps_the_first_200_bytes() -> None:
    assert excerpt(b"a" * 199 + b"bc") == "a" * 199 + "b"
    assert excerpt(b"0123456789", limit=4) == "0123"


def test_excerpt_escapes_bytes_that_are_not_utf8() -> None:
    assert excerpt(b"\xff\xfe21.5") == "\\xff\\xfe21.5"
    assert excerpt("°C".encode()) == "°C"


def test_excerpt_escapes_a_character_cut_at_the_limit() -> None:
    payload = b"a" * 199 + "°".encode()  # the degree sign is 2 bytes, the cut takes one
    assert excerpt(payload) == "a" * 199 + "\\xc2"
