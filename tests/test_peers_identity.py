"""Peer identities and the site roster: keys as an operator makes them, signatures that bind a
message to its sender, and the refusals."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from agent.cli import cli
from agent.config import parse_config, read_yaml
from agent.errors import AgentError
from agent.peers.identity import Identity, Roster
from agent.peers.trust import Trust
from agent.service.peers import PeerService
from tests.conftest import EXAMPLE_CONFIG, peer_identities


def test_keygen_identity_writes_a_private_key_and_the_line_for_the_roster(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    result = CliRunner().invoke(cli, ["keygen", "--identity", str(path)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    public = (tmp_path / "identity.key.pub").read_text().strip()
    assert public.startswith("ed25519:") and public in result.output
    roster = Roster.parse(f"pi-kitchen: {public}\n")
    me = Identity.load("pi-kitchen", path)
    roster.verify(me.sign({"agent": "pi-kitchen", "x": 1.5}), "pi-kitchen", "test")
    again = CliRunner().invoke(cli, ["keygen", "--identity", str(path)])
    assert again.exit_code == 1 and "already exists" in again.output  # never overwritten


def test_a_signature_binds_every_field_and_the_sender(tmp_path: Path) -> None:
    roster_file, keys = peer_identities(tmp_path, ["a1", "a2"])
    roster = Roster.load(roster_file)
    a1 = Identity.load("a1", keys["a1"])
    message = a1.sign({"agent": "a1", "action": "cool", "scores": {"cool": 1.0}})
    roster.verify(json.loads(json.dumps(message)), "a1", "result")  # survives the wire
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({**message, "action": "heat"}, "a1", "bad signature"),
        (message, "a2", "signed by 'a1', expected 'a2'"),
        ({k: v for k, v in message.items() if k != "sig"}, "a1", "unsigned"),
        ({"agent": "a1"}, "a1", "unsigned"),
        ({**message, "sig": "00"}, "a1", "malformed signature"),
        (Identity("x9", a1.key).sign({"agent": "x9"}), "x9", "'x9' is not in the roster"),
        (Identity("a2", Identity.generate("a2").key).sign({"agent": "a2"}), "a2",
         "bad signature"),  # a key not in the roster, under a member's name
    ]
    for data, sender, error in cases:
        with pytest.raises(AgentError, match=error):
            roster.verify(data, sender, "result")


@pytest.mark.parametrize(("text", "error"), [
    ("- a\n- b\n", "a mapping of agent id to public key"),
    ("a1: ssh-rsa AAAA\n", "a1: a public key is written ed25519:"),
    ("a1: ed25519:AAAA\n", "not an Ed25519 public key"),
    ("'a/b': ed25519:AAAA\n", "is not an agent id"),
    ("a1: [\n", "not valid YAML"),
])
def test_a_bad_roster_is_refused_with_its_path(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "roster.yaml"
    path.write_text(text)
    with pytest.raises(AgentError, match=error) as info:
        Roster.load(path)
    assert str(path) in str(info.value)


def test_the_roster_must_list_this_agent_with_its_own_key(tmp_path: Path) -> None:
    roster, keys = peer_identities(tmp_path, ["a1", "a2"])
    with pytest.raises(AgentError, match="this agent \\(a3\\) is not in the roster; add the line"):
        Trust.from_files("a3", keys["a1"], roster)
    with pytest.raises(AgentError, match="the key listed for a2 is not the one"):
        Trust.from_files("a2", keys["a1"], roster)
    trust = Trust.from_files("a1", keys["a1"], roster)
    assert trust.enforcing and trust.in_roster("a2") and not trust.in_roster("x")


def test_a_bad_roster_on_reload_keeps_the_running_one(tmp_path: Path) -> None:
    roster, keys = peer_identities(tmp_path, ["a1", "a2"])
    trust = Trust.from_files("a1", keys["a1"], roster)
    roster.write_text("a1: nonsense\n")
    assert not trust.reload()
    assert trust.roster is not None and trust.roster.ids == ["a1", "a2"]


def peered_config(tmp_path: Path, **security: str) -> Any:
    data = read_yaml(EXAMPLE_CONFIG.read_text())
    data["agent"].update(id="a1", data_dir=str(tmp_path))
    data["security"].update(security)
    data["policies"][0]["peers"] = {"group": "livingroom", "quorum": 1}
    return parse_config(yaml.safe_dump(data))


def test_peers_without_a_roster_keep_working_and_say_what_to_add(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        service = PeerService(peered_config(tmp_path), "a1", publish=print, act=print)
    assert not service.trust.enforcing
    assert "trust anyone who can publish on the broker" in caplog.text
    assert "security.roster_file" in caplog.text and "keygen --identity" in caplog.text
    payload = b'{"state":"online"}'
    assert service.outgoing("edge/agents/a1/status", payload) == payload  # nothing to sign with


def test_with_a_roster_peer_messages_go_out_signed_and_nothing_else(tmp_path: Path) -> None:
    roster, keys = peer_identities(tmp_path / "site", ["a1"])
    config = peered_config(tmp_path, identity_key_file=str(keys["a1"]),
                           roster_file=str(roster))
    service = PeerService(config, "a1", publish=print, act=print)
    payload = b'{"agent":"a1","policy":"climate"}'
    for topic in ("edge/agents/a1/status", "edge/agents/a1/results/climate",
                  "edge/decisions/climate", "edge/groups/livingroom/fl/climate/update/a1"):
        signed = json.loads(service.outgoing(topic, payload))
        Roster.load(roster).verify(signed, "a1", topic)
    for topic in ("edge/agents/a1/errors", "edge/actuators/d/a/set", "edge/agents/a2/status"):
        assert service.outgoing(topic, payload) == payload
    assert service.outgoing("edge/agents/a1/status", b"") == b""


def test_a_roster_needs_an_identity(tmp_path: Path) -> None:
    from agent.errors import ConfigError

    with pytest.raises(ConfigError, match="security: roster_file needs identity_key_file"):
        peered_config(tmp_path, roster_file=str(tmp_path / "roster.yaml"))


def test_with_a_roster_a_replayed_or_cleared_status_changes_nothing(tmp_path: Path) -> None:
    from agent.mqtt import Message

    roster, keys = peer_identities(tmp_path / "site", ["a1", "a2"])
    config = peered_config(tmp_path, identity_key_file=str(keys["a1"]),
                           roster_file=str(roster))
    now = [1000.0]
    service = PeerService(config, "a1", publish=print, act=print, clock=lambda: now[0])
    a2 = Identity.load("a2", keys["a2"])

    def status(state: str, ts: float) -> bytes:
        data = {"state": state, "ts": ts, "groups": ["livingroom"], "uptime_s": 100.0}
        return json.dumps(a2.sign(data)).encode()

    def deliver(payload: bytes) -> None:
        assert service.handle(Message("edge/agents/a2/status", payload, 1, 0, now[0], 0))

    old = status("online", 999.0)
    deliver(old)
    assert service.membership.members("livingroom") == ["a2"]
    deliver(status("offline", 900.0))  # its will, made at its start: believed
    assert service.membership.members("livingroom") == []
    deliver(old)  # the attacker replays the last online status it saw: no news
    deliver(status("online", 998.0))  # or an older one
    deliver(b"")  # and clears the retained one
    deliver(status("online", 1000.0 - 3600))  # an hour old (stale_after is 90 s)
    assert service.membership.members("livingroom") == []
    assert service.trust.refused["status"] == 3
    deliver(status("online", 1000.0))
    assert service.membership.members("livingroom") == ["a2"]
