"""Attacks on model updates (issue 12, attacks 2 and 7), each on a real Mosquitto.

A compromised actuator holds the HMAC command key; any broker user may publish forged chunks
or replay a manifest it saw. None of it installs a model the operator did not sign, aborts a
genuine transfer, or brings an older version back, not even after a restart.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey as PrivateKey

from agent.broker import Mosquitto
from agent.inference.store import current_model, install
from agent.mqtt import Message
from agent.policy.signing import sign as hmac_sign
from agent.service.manifest import Manifest
from agent.service.modelreceiver import MAX_QUEUED, Receiver
from agent.service.modelupdate import NO_UPDATE_KEY, chunk_topic, update_topic
from agent.service.updatekey import generate_key_pair, load_private
from tests.conftest import AgentProcess, Collector, agent_config, wait_for
from tests.helpers import COMMAND_KEY
from tests.test_modelupdate import (
    AGENT,
    CHUNK,
    KEY,
    NOW,
    PREFIX,
    Agentside,
    assembler_at,
    chunks_of,
    make_manifest,
    manifest_bytes,
)

pytestmark = pytest.mark.broker


@pytest.fixture
def blob(tmp_path: Path) -> Path:
    path = tmp_path / "blob.gguf"
    path.write_bytes(os.urandom(300 * 1024 + 123))  # 10 chunks, the last one short
    return path


@pytest.fixture
def older(tmp_path: Path) -> Path:
    path = tmp_path / "older.gguf"
    path.write_bytes(os.urandom(40 * 1024))
    return path


class Installing(Agentside):
    """The receiving side, installing what it assembles (the trial accepts any file)."""

    def _on_assembled(self, path: Path, manifest: Manifest) -> None:
        install(path, None, lambda p: None, ts=manifest.ts, version=manifest.version)
        super()._on_assembled(path, manifest)


@pytest.fixture
def side(broker: Mosquitto, tmp_path: Path) -> Iterator[Installing]:
    made = Installing(broker.port, tmp_path / "data")
    yield made
    made.close()


@pytest.fixture
def attacker(broker: Mosquitto) -> Iterator[Collector]:
    made = Collector(broker.port)
    yield made
    made.close()


def send(sender: Collector, topic: str, payload: bytes) -> None:
    info = sender.publish(topic, payload)
    info.wait_for_publish(5)
    assert info.is_published()


def send_chunks(sender: Collector, m: Manifest, path: Path, only: range | None = None) -> None:
    for index, chunk in enumerate(chunks_of(path, m.chunk_size)):
        if only is None or index in only:
            send(sender, chunk_topic(PREFIX, AGENT, m.sha256, index), chunk)


def refusals(side: Agentside) -> list[str]:
    return [reason for _, reason in side.refused]


def test_a_forged_chunk_0_is_dropped_and_the_genuine_one_installs(
    side: Installing, attacker: Collector, blob: Path, tmp_path: Path
) -> None:
    m = make_manifest(blob, chunk_size=CHUNK, now=NOW, version=7)
    send(attacker, update_topic(PREFIX, AGENT), manifest_bytes(m))
    send(attacker, chunk_topic(PREFIX, AGENT, m.sha256, 0), os.urandom(CHUNK))  # first!
    send_chunks(attacker, m, blob)
    wait_for(lambda: bool(side.assembled), 10, "the file assembled")
    [(path, manifest)] = side.assembled
    assert manifest == m and path.read_bytes() == blob.read_bytes()
    installed = current_model(tmp_path / "data")
    assert installed is not None and installed.sha256 == m.sha256
    assert side.assembler.dropped == 1
    [(topic, reason)] = side.refused
    assert topic == chunk_topic(PREFIX, AGENT, m.sha256, 0)
    assert "chunk 0 dropped: not the sha256 the signed manifest lists" in reason


def test_an_older_manifest_replayed_mid_transfer_does_not_abandon_it(
    side: Installing, attacker: Collector, blob: Path, older: Path
) -> None:
    old = make_manifest(older, chunk_size=CHUNK, now=NOW - 60, version=3)  # seen on the wire
    m = make_manifest(blob, chunk_size=CHUNK, now=NOW, version=4)
    send(attacker, update_topic(PREFIX, AGENT), manifest_bytes(m))
    send_chunks(attacker, m, blob, only=range(0, 5))
    send(attacker, update_topic(PREFIX, AGENT), manifest_bytes(old))  # the replay
    send_chunks(attacker, m, blob, only=range(5, 10))
    wait_for(lambda: bool(side.assembled), 10, "the file assembled")
    assert [manifest for _, manifest in side.assembled] == [m]
    assert refusals(side) == [
        f"model update {old.sha256} refused: version 3 is not newer than 4, "
        "the transfer in progress"
    ]


def old_scheme_manifest(path: Path) -> bytes:
    """A manifest as the code before v2 took it: HMAC-signed with the command key."""
    m = make_manifest(path, chunk_size=CHUNK, now=NOW, version=9)
    fields: dict[str, object] = {
        "name": m.name,
        "size": m.size,
        "sha256": m.sha256,
        "chunk_size": m.chunk_size,
        "chunks": m.chunks,
        "ts": m.ts,
    }
    return json.dumps(fields | {"sig": hmac_sign(fields, COMMAND_KEY)}).encode()


def test_manifests_not_signed_by_the_update_key_are_refused(
    side: Installing, attacker: Collector, blob: Path
) -> None:
    m = make_manifest(blob, chunk_size=CHUNK, now=NOW, version=9)
    # 1. the old scheme: what a compromised plug holding the command key can sign
    send(attacker, update_topic(PREFIX, AGENT), old_scheme_manifest(blob))
    # 2. the v2 format, HMAC-signed with the command key
    fields = {k: v for k, v in m.signed(KEY).items() if k != "sig"}
    send(
        attacker,
        update_topic(PREFIX, AGENT),
        json.dumps(fields | {"sig": hmac_sign(fields, COMMAND_KEY)}).encode(),
    )
    # 3. another Ed25519 key, named as itself and as the trusted one
    other = PrivateKey.generate()
    send(attacker, update_topic(PREFIX, AGENT), manifest_bytes(m, other))
    posing = m.signed(other) | {"key": fields["key"]}
    send(attacker, update_topic(PREFIX, AGENT), json.dumps(posing).encode())
    send_chunks(attacker, m, blob)
    wait_for(lambda: len(side.refused) == 4 + m.chunks, 10, "every message refused")
    reasons = refusals(side)
    assert "no longer accepted; sign with the operator's update key" in reasons[0]
    assert reasons[1].endswith("refused: bad signature")
    assert "refused: signed by update key" in reasons[2] and "this agent trusts" in reasons[2]
    assert reasons[3].endswith("refused: bad signature")
    assert all("dropped: no transfer of that file" in r for r in reasons[4:])
    assert side.assembled == [] and side.assembler.manifest is None


def test_a_version_not_newer_than_the_last_accepted_is_refused(
    side: Installing, attacker: Collector, blob: Path, older: Path
) -> None:
    m = make_manifest(blob, chunk_size=CHUNK, now=NOW, version=5)
    send(attacker, update_topic(PREFIX, AGENT), manifest_bytes(m))
    send_chunks(attacker, m, blob)
    wait_for(lambda: bool(side.assembled), 10, "the file assembled")
    for version in (5, 4):  # the same version for another file, then an older one
        again = make_manifest(older, chunk_size=CHUNK, now=NOW + 1, version=version)
        send(attacker, update_topic(PREFIX, AGENT), manifest_bytes(again))
    wait_for(lambda: len(side.refused) == 2, 10, "both refused")
    assert [r.split("refused: ")[1] for r in refusals(side)] == [
        "version 5 is not newer than 5, the last one accepted",
        "version 4 is not newer than 5, the last one accepted",
    ]
    assert side.assembler.manifest is None


# -- a real agent process ---------------------------------------------------------------------

STATUS, ERRORS = f"{PREFIX}/agents/test-agent/status", f"{PREFIX}/agents/test-agent/errors"


def errors_with(watch: Collector, text: str) -> list[str]:
    return [e["error"] for e in watch.on(ERRORS) if text in e["error"]]


def test_the_floor_holds_after_the_agent_restarts(
    tmp_path: Path,
    broker: Mosquitto,
    agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector],
    blob: Path,
    older: Path,
) -> None:
    key_file = tmp_path / "update.key"
    public = generate_key_pair(key_file)
    cfg = agent_config(tmp_path, broker.port, security__update_public_key_file=str(public))
    watch = collector_factory(broker.port, STATUS, ERRORS)
    sender = collector_factory(broker.port)
    key, now = load_private(key_file), time.time()
    topic = f"{PREFIX}/agents/test-agent/model/update"
    agent = agent_factory(cfg)
    wait_for(lambda: any(s.get("state") == "online" for s in watch.on(STATUS)), 60, "online")
    m = make_manifest(blob, chunk_size=CHUNK, now=now, version=10, agent="test-agent")
    send(sender, topic, manifest_bytes(m, key))
    for index, chunk in enumerate(chunks_of(blob, CHUNK)):
        send(sender, f"{PREFIX}/agents/test-agent/model/chunk/{m.sha256}/{index}", chunk)
    # random bytes are no model: the trial fails, the pointer stays, only the floor moved
    wait_for(lambda: bool(errors_with(watch, "rolled back")), 60, "the trial's rollback")
    assert not (tmp_path / "data" / "models" / "current.json").exists()
    agent.signal(signal.SIGTERM)
    assert agent.wait(30) == 0

    agent = agent_factory(cfg)
    watch.messages.clear()
    wait_for(lambda: any(s.get("state") == "online" for s in watch.on(STATUS)), 60, "online")
    replay = make_manifest(older, chunk_size=CHUNK, now=now, version=9, agent="test-agent")
    send(sender, topic, manifest_bytes(replay, key))
    wait_for(lambda: bool(errors_with(watch, "not newer")), 20, "the replay refused")
    assert errors_with(watch, "not newer") == [
        f"model update {replay.sha256} refused: version 9 is not newer than 10, "
        "the last one accepted"
    ]
    assert agent.alive()
    floor = json.loads((tmp_path / "data" / "models" / "floor.json").read_text())
    assert floor == {"version": 10, "sha256": m.sha256}


def test_an_agent_with_only_the_command_key_runs_without_model_updates(
    tmp_path: Path,
    broker: Mosquitto,
    agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector],
    blob: Path,
) -> None:
    (tmp_path / "command.key").write_bytes(COMMAND_KEY)
    cfg = agent_config(
        tmp_path, broker.port, security__command_key_file=str(tmp_path / "command.key")
    )
    watch = collector_factory(broker.port, STATUS, ERRORS)
    agent = agent_factory(cfg)
    wait_for(lambda: any(s.get("state") == "online" for s in watch.on(STATUS)), 60, "online")
    assert NO_UPDATE_KEY in agent.log()
    sender = collector_factory(broker.port)
    send(sender, f"{PREFIX}/agents/test-agent/model/update", old_scheme_manifest(blob))
    seen = len(watch.on(STATUS))
    wait_for(lambda: len(watch.on(STATUS)) >= seen + 2, 10, "two more status reports")
    assert agent.alive() and watch.on(ERRORS) == []
    assert not (tmp_path / "data" / "models" / "incoming").exists()


def test_a_qos0_flood_waits_in_a_bounded_queue_and_a_genuine_update_still_lands(
    side: Installing, attacker: Collector, blob: Path, tmp_path: Path
) -> None:
    stalled = Receiver(
        assembler_at(tmp_path / "other"),
        PREFIX,
        AGENT,
        ack=lambda m: None,
        on_assembled=lambda p, m: None,
    )  # its thread not started: nothing drains
    junk = Message(chunk_topic(PREFIX, AGENT, "0" * 64, 0), os.urandom(CHUNK), 0, 0, 0.0, 0)
    for _ in range(1000):
        assert stalled.handle(junk)
    assert stalled._queue.qsize() == MAX_QUEUED and stalled.overflow == 1000 - MAX_QUEUED

    m = make_manifest(blob, chunk_size=CHUNK, now=NOW, version=11)  # and on a live receiver
    for _ in range(1000):
        attacker.publish(chunk_topic(PREFIX, AGENT, m.sha256, 0), junk.payload, qos=0)
    send(attacker, update_topic(PREFIX, AGENT), manifest_bytes(m))
    send_chunks(attacker, m, blob)
    wait_for(lambda: bool(side.assembled), 30, "the file assembled")
    assert len(side.refused) <= 16 + 10  # reports of a flood are few
