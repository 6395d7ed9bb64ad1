"""Sensor payloads the agent must reject (SPEC 1), shared by unit and integration tests.

Every payload in :data:`BAD_PAYLOADS` is rejected when published on
``edge/sensors/dev-1/temperature`` to an agent running the example configuration
(``config/agent.example.yaml``: temperature in C, plausible range [-40, 85],
``max_payload_bytes`` 4096), with the agent's clock anywhere from 2000 to 2099. Most are refused by
:func:`agent.pipeline.parse.parse_reading`; the last few are well-formed but fail unit
conversion or the plausible range in :meth:`agent.pipeline.core.Pipeline.convert`.

"""

from __future__ import annotations

TOPIC = "edge/sensors/dev-1/temperature"
MAX_PAYLOAD_BYTES = 4096

BAD_PAYLOADS: list[tuple[str, bytes]] = [
    # -- bytes and framing --------------------------------------------------------------------
    ("empty", b""),
    ("whitespace-only", b" \t\r\n "),
    ("bad-utf8", b"\xff\xfe23.4"),
    ("bad-utf8-inside-json", b'{"value": 21.5, "unit": "\xc3"}'),
    ("utf8-bom", b"\xef\xbb\xbf23.4"),
    ("oversized", b"23.4" + b" " * MAX_PAYLOAD_BYTES),
    # -- not JSON -----------------------------------------------------------------------------
    ("plain-text", b"hello"),
    ("hex-number", b"0x17"),
    ("comma-decimal", b"23,4"),
    ("leading-dot", b".5"),
    ("trailing-garbage", b'{"value": 21.5} x'),
    ("truncated-object", b'{"value": 21.5'),
    ("single-quoted-keys", b"{'value': 21.5}"),
    ("unquoted-key", b"{value: 21.5}"),
    ("nested-4000-open-brackets", b"[" * 4000),
    ("nested-2000-balanced-brackets", b"[" * 2000 + b"]" * 2000),
    # -- JSON, but neither a number nor an object -----------------------------------------------
    ("json-null", b"null"),
    ("json-true", b"true"),
    ("json-string", b'"23.4"'),
    ("json-array", b"[23.4]"),
    # -- non-finite numbers -------------------------------------------------------------------
    ("nan", b"NaN"),
    ("infinity", b"Infinity"),
    ("minus-infinity", b"-Infinity"),
    ("nan-in-object", b'{"value": NaN}'),
    ("overflow-1e400", b"1e400"),
    ("overflow-minus-1e400-in-object", b'{"value": -1e400}'),
    # -- the object's value -------------------------------------------------------------------
    ("empty-object", b"{}"),
    ("missing-value", b'{"ts": 1764370000.25, "seq": 1}'),
    ("value-null", b'{"value": null}'),
    ("value-string", b'{"value": "23.4"}'),
    ("value-bool", b'{"value": true}'),
    ("value-array", b'{"value": [23.4]}'),
    ("value-object", b'{"value": {"c": 23.4}}'),
    ("duplicate-keys", b'{"value": 21.5, "value": 22.5}'),
    # -- ts -----------------------------------------------------------------------------------
    ("ts-string", b'{"value": 21.5, "ts": "2025-11-28T22:46:40Z"}'),
    ("ts-bool", b'{"value": 21.5, "ts": true}'),
    ("ts-nan", b'{"value": 21.5, "ts": NaN}'),
    ("ts-zero", b'{"value": 21.5, "ts": 0}'),
    ("ts-before-2000", b'{"value": 21.5, "ts": 946684799.5}'),
    ("ts-year-2100", b'{"value": 21.5, "ts": 4102444800}'),
    # -- seq ----------------------------------------------------------------------------------
    ("seq-negative", b'{"value": 21.5, "seq": -1}'),
    ("seq-float", b'{"value": 21.5, "seq": 1.5}'),
    ("seq-integral-float", b'{"value": 21.5, "seq": 3.0}'),
    ("seq-2-pow-63", b'{"value": 21.5, "seq": 9223372036854775808}'),
    ("seq-string", b'{"value": 21.5, "seq": "7"}'),
    ("seq-bool", b'{"value": 21.5, "seq": false}'),
    # -- unit ---------------------------------------------------------------------------------
    ("unit-number", b'{"value": 21.5, "unit": 1}'),
    ("unit-empty", b'{"value": 21.5, "unit": ""}'),
    ("unit-17-chars", b'{"value": 21.5, "unit": "CCCCCCCCCCCCCCCCC"}'),
    # -- well-formed, refused by conversion or range (the example temperature sensor) ---------
    ("unit-unknown", b'{"value": 21.5, "unit": "X"}'),
    ("unit-lone-surrogate", b'{"value": 21.5, "unit": "\\ud800"}'),
    ("unit-wrong-family", b'{"value": 21.5, "unit": "%"}'),
    ("above-range", b"85.5"),
    ("below-range", b'{"value": -40.1}'),
    ("200-fahrenheit", b'{"value": 200, "unit": "F"}'),
    ("zero-kelvin", b'{"value": 0, "unit": "K"}'),
    # integers too large for a float
    ("int-400-digits", b"1" + b"0" * 400),
    ("value-int-400-digits", b'{"value": 1' + b"0" * 400 + b"}"),
    ("ts-int-400-digits", b'{"value": 21.5, "ts": 1' + b"0" * 400 + b"}"),
]
