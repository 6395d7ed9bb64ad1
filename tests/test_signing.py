"""Signed commands (SPEC 4): canonical JSON, HMAC, the key file, the acceptance rule."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from agent.errors import AgentError
from agent.policy.signing import (
    NonceMemory,
    canonical_json,
    check_command,
    generate_key_file,
    load_key,
    sign,
    verify,
)
from tests.helpers import COMMAND_KEY, ROOT, signed_command

KEY = COMMAND_KEY
NOW = 1764370001.0
SPEC_FIELDS = [
    "id",
    "device",
    "actuator",
    "action",
    "value",
    "ts",
    "expires",
    "nonce",
    "agent",
    "policy",
    "reason",
    "sig",
]


def command(**overrides: Any) -> dict[str, object]:
    return signed_command(**{"key": KEY, "now": NOW, **overrides})


def wire(cmd: dict[str, object]) -> bytes:
    return json.dumps(cmd).encode("utf-8")


# -- canonical JSON and signatures -------------------------------------------------------------


def test_canonical_json_is_sorted_compact_utf8() -> None:
    obj = {"reason": "zu warm: 26,1 °C — Küche", "b": [1, 2.5, None], "a": {"y": True, "x": "é"}}
    expected = '{"a":{"x":"é","y":true},"b":[1,2.5,null],"reason":"zu warm: 26,1 °C — Küche"}'
    assert canonical_json(obj) == expected.encode("utf-8")


def test_sign_is_hmac_sha256_over_canonical_json_without_sig() -> None:
    fields = {"value": 22.0, "action": "cool", "reason": "très chaud", "sig": "ignored"}
    text = '{"action":"cool","reason":"très chaud","value":22.0}'
    expected = hmac.new(KEY, text.encode("utf-8"), hashlib.sha256).hexdigest()
    assert sign(fields, KEY) == expected
    assert expected == expected.lower() and len(expected) == 64


def test_make_command_has_the_spec_4_shape() -> None:
    cmd = command()
    assert list(cmd) == SPEC_FIELDS
    assert cmd["ts"] == NOW and cmd["expires"] == NOW + 30.0
    assert cmd["value"] == 22.0 and isinstance(cmd["value"], float)
    nonce, cid = cmd["nonce"], cmd["id"]
    assert isinstance(nonce, str) and len(nonce) == 16 and int(nonce, 16) >= 0
    assert nonce == nonce.lower()
    assert isinstance(cid, str) and len(cid) == 32
    assert verify(cmd, KEY)
    assert command()["nonce"] != nonce and command()["id"] != cid


def test_make_command_takes_given_id_and_nonce_and_int_or_none_value() -> None:
    cmd = command(command_id="c-1", nonce="00112233aabbccdd", value=22)
    assert cmd["id"] == "c-1" and cmd["nonce"] == "00112233aabbccdd"
    assert cmd["value"] == 22.0 and isinstance(cmd["value"], float)
    assert command(value=None)["value"] is None


def test_make_command_cuts_the_reason_to_200_characters() -> None:
    cmd = command(reason="é" * 300)
    assert cmd["reason"] == "é" * 200
    assert verify(cmd, KEY)


@pytest.mark.parametrize(
    "overrides",
    [{"value": float("nan")}, {"value": float("inf")}, {"ttl": 0.0}, {"now": float("nan")}],
)
def test_make_command_refuses_what_no_actuator_could_accept(overrides: dict[str, Any]) -> None:
    with pytest.raises(AgentError):
        command(**overrides)


def test_a_command_survives_the_wire_with_non_ascii_reason() -> None:
    cmd = command(reason="Küche 26,1 °C ist zu warm ☀")
    assert check_command(wire(cmd), KEY, NOW, NonceMemory()) is None
    raw = json.dumps(cmd, ensure_ascii=False).encode("utf-8")
    assert check_command(raw, KEY, NOW, NonceMemory()) is None


@pytest.mark.parametrize("name", [f for f in SPEC_FIELDS if f != "sig"])
def test_tampering_with_any_field_breaks_the_signature(name: str) -> None:
    cmd = command()
    original = cmd[name]
    cmd[name] = 23.0 if isinstance(original, float) else f"{original}x"
    assert not verify(cmd, KEY)
    assert check_command(wire(cmd), KEY, NOW, NonceMemory()) == "bad signature"


def test_adding_a_field_breaks_the_signature() -> None:
    cmd = command()
    cmd["extra"] = 1
    assert not verify(cmd, KEY)


def test_an_int_for_a_float_value_is_a_different_message() -> None:
    cmd = command()
    cmd["value"] = 22
    assert not verify(cmd, KEY)


@pytest.mark.parametrize("sig", [None, 42, "", "A" * 64, "é" * 64, "\ud800"])
def test_verify_is_false_for_a_bad_or_missing_sig(sig: object) -> None:
    cmd = command()
    cmd["sig"] = sig
    assert not verify(cmd, KEY)
    del cmd["sig"]
    assert not verify(cmd, KEY)


def test_uppercase_hex_is_not_the_signature() -> None:
    cmd = command()
    cmd["sig"] = str(cmd["sig"]).upper()
    assert not verify(cmd, KEY)


def test_wrong_key() -> None:
    cmd = command()
    assert not verify(cmd, b"another key of enough length")
    assert check_command(wire(cmd), KEY[:-1] + b"X", NOW, NonceMemory()) == "bad signature"


def test_verify_is_false_for_unserialisable_fields() -> None:
    cmd = command()
    cmd["reason"] = "\ud800"  # a lone surrogate cannot be UTF-8
    assert not verify(cmd, KEY)
    cmd["reason"] = object()
    assert not verify(cmd, KEY)


# -- the acceptance rule ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (-30.0, None),  # ts - 30 <= now
        (-30.001, "not yet valid"),
        (0.0, None),
        (30.0, None),  # now <= expires
        (30.001, "expired"),
    ],
)
def test_validity_window_edges(offset: float, expected: str | None) -> None:
    cmd = command(ttl=30.0)
    assert check_command(wire(cmd), KEY, NOW + offset, NonceMemory()) == expected


def test_skew_is_a_parameter() -> None:
    cmd = command()
    assert check_command(wire(cmd), KEY, NOW - 5.0, NonceMemory(), skew=4.0) == "not yet valid"
    assert check_command(wire(cmd), KEY, NOW - 4.0, NonceMemory(), skew=4.0) is None


def test_a_replay_is_refused_until_and_after_expiry() -> None:
    nonces = NonceMemory()
    cmd = wire(command())
    assert check_command(cmd, KEY, NOW, nonces) is None
    assert check_command(cmd, KEY, NOW + 1, nonces) == "replayed"
    assert check_command(cmd, KEY, NOW + 30, nonces) == "replayed"
    assert check_command(cmd, KEY, NOW + 31, nonces) == "expired"


def test_the_same_nonce_under_a_new_id_is_a_replay() -> None:
    nonces = NonceMemory()
    assert check_command(command(nonce="aaaaaaaaaaaaaaaa"), KEY, NOW, nonces) is None
    again = command(nonce="aaaaaaaaaaaaaaaa", action="heat")
    assert check_command(again, KEY, NOW, nonces) == "replayed"


def test_a_refused_command_does_not_spend_its_nonce() -> None:
    nonces = NonceMemory()
    cmd = command()
    assert check_command(cmd, KEY, NOW - 60, nonces) == "not yet valid"
    assert len(nonces) == 0
    assert check_command(cmd, KEY, NOW, nonces) is None


def _valid_but(**changes: object) -> bytes:
    cmd: dict[str, object] = dict(command())
    cmd.update(changes)
    cmd["sig"] = sign(cmd, KEY)
    return json.dumps(cmd).encode("utf-8")


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xff\xfe",
        b"not json",
        b"[1, 2]",
        b'"a string"',
        b"[" * 100_000,
        wire({k: v for k, v in command().items() if k != "nonce"}),
        wire({k: v for k, v in command().items() if k != "sig"}),
        _valid_but(value="22"),
        _valid_but(value=True),
        _valid_but(ts="1764370001"),
        _valid_but(expires=None),
        _valid_but(nonce=7),
        _valid_but(reason=None),
        _valid_but(value=10**400),
        json.dumps(command()).replace("22.0", "NaN").encode(),
        json.dumps(command()).replace("22.0", "1e999").encode(),
        json.dumps(command())
        .replace('"action": "cool"', '"action": "cool", "action": "x"')
        .encode(),
    ],
)
def test_malformed_commands(payload: bytes) -> None:
    assert check_command(payload, KEY, NOW, NonceMemory()) == "malformed"


def test_a_mapping_is_checked_like_bytes() -> None:
    assert check_command(command(), KEY, NOW, NonceMemory()) is None
    assert check_command({"id": "x"}, KEY, NOW, NonceMemory()) == "malformed"


# -- nonce memory ----------------------------------------------------------------------------


def test_nonce_memory_forgets_expired_nonces() -> None:
    nonces = NonceMemory()
    assert nonces.add("a", expires=10.0, now=0.0)
    assert nonces.add("b", expires=20.0, now=0.0)
    assert not nonces.add("a", expires=10.0, now=5.0)
    nonces.prune(10.0)
    assert "a" in nonces and len(nonces) == 2  # valid up to and including its expiry
    nonces.prune(10.5)
    assert "a" not in nonces and "b" in nonces and len(nonces) == 1
    assert nonces.add("c", expires=40.0, now=25.0)
    assert "b" not in nonces and len(nonces) == 1


def test_nonce_memory_is_bounded_and_never_lets_an_evicted_nonce_back_in() -> None:
    nonces = NonceMemory(max_size=3)
    for i, expires in enumerate([10.0, 11.0, 12.0]):
        assert nonces.add(f"n{i}", expires, now=0.0)
    assert nonces.add("n3", 13.0, now=0.0)
    assert len(nonces) == 3 and "n0" not in nonces
    assert not nonces.add("n0", 10.0, now=1.0)  # evicted, but still refused
    assert not nonces.add("fresh-but-old", 9.0, now=1.0)  # cannot be told from a replay
    assert nonces.add("n4", 14.0, now=1.0)
    assert len(nonces) == 3


def test_nonce_memory_needs_room() -> None:
    with pytest.raises(AgentError):
        NonceMemory(max_size=0)


# -- the key file ----------------------------------------------------------------------------


def test_load_key_strips_surrounding_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "command.key"
    path.write_bytes(b"  \n" + KEY + b"\r\n")
    path.chmod(0o600)
    assert load_key(path) == KEY


def test_load_key_missing(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="does not exist"):
        load_key(tmp_path / "nope.key")


def test_load_key_unreadable(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="cannot be read"):
        load_key(tmp_path)  # a directory


def load_key_as_someone_else(path: Path) -> subprocess.CompletedProcess[str]:
    """``load_key(path)`` in a child run as an unprivileged user (root reads any file)."""
    code = ("import sys; from agent.policy.signing import load_key\n"
            "try:\n    load_key(__import__('pathlib').Path(sys.argv[1])); print('loaded')\n"
            "except Exception as exc:\n    print(exc)")
    drop = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    return subprocess.run([*(drop if os.geteuid() == 0 else []), sys.executable, "-c", code,
                           str(path)], capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_load_key_without_permission() -> None:
    folder = Path(tempfile.mkdtemp())  # outside pytest's private tmp: others may enter it
    try:
        folder.chmod(0o755)
        path = folder / "command.key"
        path.write_bytes(KEY)
        path.chmod(0o644)
        assert load_key_as_someone_else(path).stdout.strip() == "loaded"  # the control
        path.chmod(0)
        out = load_key_as_someone_else(path).stdout
        assert "cannot be read" in out and "loaded" not in out
    finally:
        shutil.rmtree(folder)


@pytest.mark.parametrize("content", [b"", b"   \n", b"0123456789abcde", b" 0123456789abcde \n"])
def test_load_key_too_short(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "command.key"
    path.write_bytes(content)
    with pytest.raises(AgentError, match="at least 16"):
        load_key(path)


def test_load_key_warns_when_others_can_read_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "command.key"
    path.write_bytes(KEY)
    path.chmod(0o644)
    assert load_key(path) == KEY
    assert "readable by others" in caplog.text
    assert KEY.decode() not in caplog.text


def test_generate_key_file(tmp_path: Path) -> None:
    path = tmp_path / "command.key"
    old_umask = os.umask(0)  # the mode must not depend on the umask
    try:
        key = generate_key_file(path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) == 64 and int(key, 16) >= 0 and key == key.lower()
    assert load_key(path) == key
    assert generate_key_file(tmp_path / "other.key") != key


def test_generate_key_file_does_not_overwrite_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "command.key"
    first = generate_key_file(path)
    with pytest.raises(AgentError, match="already exists"):
        generate_key_file(path)
    assert load_key(path) == first
    (tmp_path / "command.key.tmp").write_bytes(b"left over from a crash")
    second = generate_key_file(path, overwrite=True)
    assert second != first and load_key(path) == second
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["command.key"]


def test_generate_key_file_in_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="cannot write"):
        generate_key_file(tmp_path / "missing" / "command.key")
