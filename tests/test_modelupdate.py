"""Model updates: signed manifest and chunks over a real Mosquitto, resume, trial and rollback.

The attacks on updates (forged chunks, replays, other keys) are in test_modelupdate_attacks.py.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey as PrivateKey

from agent.broker import Mosquitto
from agent.config import MqttSection
from agent.errors import AgentError
from agent.inference.locate import sha256_of
from agent.inference.store import current_model, install, read_pointer, trial_load
from agent.mqtt import Message, MqttClient
from agent.service import manifest as manifests
from agent.service.manifest import Manifest
from agent.service.modelpush import push
from agent.service.modelreceiver import Receiver
from agent.service.modelupdate import Assembler, chunk_topic, filters, update_topic
from tests.conftest import Collector, wait_for
from tests.helpers import bundled

KEY = PrivateKey.generate()  # the operator's update key
PUBLIC = KEY.public_key()  # what the agent holds
NOW = 1_700_000_000.0
CHUNK = 32 * 1024
PREFIX, AGENT = "edge", "kitchen"


def clock() -> float:
    return NOW


def make_manifest(
    path: Path, *, chunk_size: int, now: float, version: int = 1, agent: str = AGENT
) -> Manifest:
    return manifests.make_manifest(
        path, agent=agent, version=version, chunk_size=chunk_size, now=now
    )


def assembler_at(data_dir: Path) -> Assembler:
    return Assembler(data_dir, PUBLIC, AGENT, clock)


@pytest.fixture
def blob(tmp_path: Path) -> Path:
    path = tmp_path / "blob.gguf"
    path.write_bytes(os.urandom(300 * 1024 + 123))  # 10 chunks, the last one short
    return path


def manifest_bytes(m: Manifest, key: PrivateKey = KEY) -> bytes:
    return json.dumps(m.signed(key)).encode()


def chunks_of(path: Path, size: int) -> list[bytes]:
    data = path.read_bytes()
    return [data[i : i + size] for i in range(0, len(data), size)]


def feed(assembler: Assembler, m: Manifest, path: Path, only: range | None = None) -> Path | None:
    result = None
    for index, chunk in enumerate(chunks_of(path, m.chunk_size)):
        if only is None or index in only:
            result = assembler.on_chunk(m.sha256, index, chunk)
    return result


def accept_all(path: Path) -> None:
    pass


class Agentside:
    """A Receiver behind a real MqttClient, as the runtime wires it."""

    def __init__(self, port: int, data_dir: Path) -> None:
        self.assembled: list[tuple[Path, Manifest]] = []
        self.refused: list[tuple[str, str]] = []
        self.done = threading.Event()
        self.assembler = assembler_at(data_dir)
        cfg = MqttSection(port=port, prefix=PREFIX, subscriptions=filters(PREFIX, AGENT))
        self.mqtt = MqttClient(cfg, "agent-under-test", will=None, on_message=self._on_message)
        self.receiver = Receiver(
            self.assembler,
            PREFIX,
            AGENT,
            ack=self.mqtt.ack,
            on_assembled=self._on_assembled,
            on_refused=self._on_refused,
        )
        self.receiver.start()
        self.mqtt.start()
        assert self.mqtt.wait_connected(10)

    def _on_message(self, msg: Message) -> None:
        assert self.receiver.handle(msg)

    def _on_assembled(self, path: Path, manifest: Manifest) -> None:
        self.assembled.append((path, manifest))
        self.done.set()

    def _on_refused(self, topic: str, reason: str) -> None:
        self.refused.append((topic, reason))
        if "refused" in reason:
            self.done.set()

    def close(self) -> None:
        self.mqtt.stop()
        self.receiver.stop()


@pytest.fixture
def agentside(broker: Mosquitto, tmp_path: Path) -> Iterator[Agentside]:
    side = Agentside(broker.port, tmp_path / "data")
    yield side
    side.close()


# -- over the broker --------------------------------------------------------------------------


def test_a_pushed_file_is_assembled_and_verified(
    broker: Mosquitto, agentside: Agentside, blob: Path, tmp_path: Path
) -> None:
    seen: list[tuple[int, int]] = []
    sent = push(
        blob,
        broker.host,
        broker.port,
        PREFIX,
        AGENT,
        KEY,
        CHUNK,
        progress=lambda d, t: seen.append((d, t)),
        clock=clock,
    )
    assert agentside.done.wait(10), "nothing assembled"
    assert agentside.refused == []
    [(path, manifest)] = agentside.assembled
    assert manifest == sent and manifest.chunks == 10
    assert path == tmp_path / "data" / "models" / f"{sent.sha256}-blob.gguf"
    assert path.read_bytes() == blob.read_bytes()
    assert seen[-1] == (10, 10) and len(seen) == 10
    assert list((tmp_path / "data" / "models" / "incoming").iterdir()) == []


def test_a_corrupted_chunk_is_dropped_and_the_installed_model_stays_current(
    broker: Mosquitto, agentside: Agentside, blob: Path, tmp_path: Path
) -> None:
    """The receiver's side only; that a running agent keeps answering with its old model
    through a failed update is test_model_push.py's."""
    data_dir = tmp_path / "data"
    old = feed_and_install(data_dir, tmp_path / "old.gguf")
    m = make_manifest(blob, chunk_size=CHUNK, now=NOW + 10, version=2)
    sender = Collector(broker.port)
    try:
        sender.publish(update_topic(PREFIX, AGENT), manifest_bytes(m)).wait_for_publish(5)
        for index, chunk in enumerate(chunks_of(blob, CHUNK)):
            if index == 3:
                chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
            sender.publish(chunk_topic(PREFIX, AGENT, m.sha256, index), chunk).wait_for_publish(5)
    finally:
        sender.close()
    wait_for(lambda: agentside.assembler.missing() == [3], 10, "every chunk but the corrupted")
    [(topic, reason)] = agentside.refused
    assert topic == chunk_topic(PREFIX, AGENT, m.sha256, 3) and "chunk 3 dropped" in reason
    assert agentside.assembled == [] and agentside.assembler.missing() == [3]
    assert agentside.assembler.dropped == 1
    models = data_dir / "models"
    assert not (models / f"{m.sha256}-blob.gguf").exists()
    assert current_model(data_dir) == old


def feed_and_install(data_dir: Path, path: Path) -> object:
    path.write_bytes(os.urandom(5000))
    assembler = assembler_at(data_dir)
    m = make_manifest(path, chunk_size=1024, now=NOW)
    assert assembler.on_manifest(manifest_bytes(m)) is None
    assembled = feed(assembler, m, path)
    assert assembled is not None
    install(assembled, None, accept_all, ts=m.ts)
    return current_model(data_dir)


# -- the assembler on its own -----------------------------------------------------------------


def test_a_tampered_manifest_is_refused(tmp_path: Path, blob: Path) -> None:
    assembler = assembler_at(tmp_path)
    m = make_manifest(blob, chunk_size=CHUNK, now=NOW)
    tampered = m.signed(KEY) | {"size": m.size + 1}
    assert assembler.on_manifest(json.dumps(tampered).encode()) == "bad signature"
    bad_sig = m.signed(KEY) | {"sig": "00" * 64}
    assert assembler.on_manifest(json.dumps(bad_sig).encode()) == "bad signature"
    assert assembler.manifest is None
    assert feed(assembler, m, blob) is None
    assert not (tmp_path / "models" / "incoming").exists()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"name": "../../etc/passwd"}, "must be a bare file name"),
        ({"name": "a\\b.gguf"}, "must be a bare file name"),
        ({"size": 1 << 50, "chunks": (1 << 50) // CHUNK}, "outside 1.."),
        ({"chunk_size": 10, "chunks": 30_000}, "chunk_size 10 is outside"),
        ({"chunks": 3}, "do not fit"),
        ({"sha256": "ABC"}, "64 lowercase hex"),
        ({"chunk_sha256": "AAAA"}, "chunk_sha256 holds 3 bytes"),
        ({"chunk_sha256": "not base64!"}, "malformed manifest"),
        ({"version": 0}, "version 0 is outside"),
        ({"chunk_size": 2 << 20, "chunks": 1}, "outside 1024..1048576"),
        ({"agent": "living-room"}, "manifest is for agent 'living-room'"),
        ({"type": "edge-agent/model-update/v3"}, "not a edge-agent/model-update/v2 manifest"),
        ({"ts": NOW + 3600}, "in the future"),
        ({"ts": NOW - 30 * 86400}, "ago"),
    ],
)
def test_absurd_manifests_are_refused(
    tmp_path: Path, blob: Path, change: dict[str, object], reason: str
) -> None:
    m = make_manifest(blob, chunk_size=CHUNK, now=NOW)
    fields = {k: v for k, v in m.signed(KEY).items() if k not in ("sig", "key")} | change
    refusal = assembler_at(tmp_path).on_manifest(json.dumps(sign(fields)).encode())
    assert refusal is not None and reason in refusal


def sign(fields: dict[str, object]) -> dict[str, object]:
    """Sign arbitrary fields with the update key, as a careless operator tool might."""
    from agent.policy.signing import canonical_json
    from agent.service import updatekey

    fields = fields | {"key": updatekey.key_id(PUBLIC)}
    return fields | {"sig": updatekey.sign(KEY, canonical_json(fields))}


def test_malformed_manifests_are_refused(tmp_path: Path) -> None:
    assembler = assembler_at(tmp_path)
    v2 = b'"type": "edge-agent/model-update/v2"'
    for payload in (
        b"",
        b"\xff",
        b"[]",
        b"{" + v2 + b', "name": "x"}',
        b"{" + v2 + b', "ts": NaN}',
    ):
        assert assembler.on_manifest(payload) == "malformed manifest"


def test_an_interrupted_transfer_resumes_after_a_restart(tmp_path: Path, blob: Path) -> None:
    m = make_manifest(blob, chunk_size=CHUNK, now=NOW)
    first = assembler_at(tmp_path)
    assert first.on_manifest(manifest_bytes(m)) is None
    assert feed(first, m, blob, only=range(0, 10, 2)) is None  # every other chunk
    del first  # the agent stops

    second = assembler_at(tmp_path)
    assert second.manifest == m
    assert second.missing() == [1, 3, 5, 7, 9]
    assert second.on_manifest(manifest_bytes(m)) is None  # the manifest redelivered
    again = make_manifest(blob, chunk_size=CHUNK, now=NOW + 1, version=2)
    assert second.on_manifest(manifest_bytes(again)) is None  # a re-push keeps what arrived
    assert second.missing() == [1, 3, 5, 7, 9] and second.manifest == again
    assembled = feed(second, m, blob, only=range(1, 10, 2))
    assert assembled is not None and assembled.read_bytes() == blob.read_bytes()
    assert second.missing() == [] and second.manifest is None


def test_chunks_of_the_wrong_length_or_transfer_are_dropped(tmp_path: Path, blob: Path) -> None:
    m = make_manifest(blob, chunk_size=CHUNK, now=NOW)
    assembler = assembler_at(tmp_path)
    assert assembler.on_manifest(manifest_bytes(m)) is None
    assert assembler.on_chunk(m.sha256, 0, b"short") is None
    assert assembler.on_chunk(m.sha256, 99, b"x" * CHUNK) is None
    assert assembler.on_chunk("0" * 64, 0, b"x" * CHUNK) is None
    assert assembler.missing() == list(range(10))
    assert assembler.dropped == 3


# -- installing -------------------------------------------------------------------------------


def test_install_trial_loads_the_real_model_and_points_current_at_it(tmp_path: Path) -> None:
    model = bundled()
    m = make_manifest(model.path, chunk_size=1 << 20, now=NOW)
    assembler = assembler_at(tmp_path)
    assert assembler.on_manifest(manifest_bytes(m)) is None
    assembled = feed(assembler, m, model.path)
    assert assembled is not None and sha256_of(assembled) == model.sha256

    assert install(assembled, model.path, trial_load(1, 128), ts=m.ts, version=1) == assembled
    installed = current_model(tmp_path)
    assert installed is not None
    assert installed.path == assembled and installed.sha256 == model.sha256
    pointer = read_pointer(tmp_path)
    assert pointer is not None and pointer["previous"] == str(model.path)
    assert pointer["version"] == 1
    again = make_manifest(model.path, chunk_size=1 << 20, now=NOW, version=2)
    assert assembler.on_manifest(manifest_bytes(again)) == "this model is already installed"


def test_a_version_not_above_the_installed_one_is_refused(tmp_path: Path, blob: Path) -> None:
    feed_and_install(tmp_path, tmp_path / "installed.gguf")  # version 1
    older = make_manifest(blob, chunk_size=CHUNK, now=NOW + 1, version=1)
    refusal = assembler_at(tmp_path).on_manifest(manifest_bytes(older))
    assert refusal == "version 1 is not newer than 1, the last one accepted"


def test_a_model_that_fails_its_trial_is_rolled_back(tmp_path: Path, blob: Path) -> None:
    old = feed_and_install(tmp_path, tmp_path / "old.gguf")
    m = make_manifest(blob, chunk_size=CHUNK, now=NOW + 5, version=2)  # random bytes: not GGUF
    assembler = assembler_at(tmp_path)
    assert assembler.on_manifest(manifest_bytes(m)) is None
    assembled = feed(assembler, m, blob)
    assert assembled is not None

    with pytest.raises(AgentError, match="rolled back") as caught:
        install(assembled, tmp_path / "old.gguf", trial_load(1, 128), ts=m.ts)
    assert "cannot load model" in str(caught.value)
    assert current_model(tmp_path) == old
    assert not assembled.exists()


def test_a_trial_that_raises_anything_still_rolls_back(tmp_path: Path, blob: Path) -> None:
    m = make_manifest(blob, chunk_size=CHUNK, now=NOW)
    assembler = assembler_at(tmp_path)
    assembler.on_manifest(manifest_bytes(m))
    assembled = feed(assembler, m, blob)
    assert assembled is not None

    def crash(path: Path) -> None:
        raise RuntimeError("boom")

    with pytest.raises(AgentError, match=r"rolled back.*RuntimeError: boom"):
        install(assembled, None, crash, ts=m.ts)
    assert read_pointer(tmp_path) is None


def test_push_reports_an_unreachable_broker(blob: Path) -> None:
    from agent.broker import free_port

    with pytest.raises(AgentError, match="cannot reach the broker"):
        push(blob, "127.0.0.1", free_port(), PREFIX, AGENT, KEY, CHUNK, timeout=1.5)


def test_a_large_file_gets_chunks_large_enough_for_one_manifest() -> None:
    assert manifests.chunk_size_for(1000) == manifests.DEFAULT_CHUNK
    size = 16 << 30
    chunk = manifests.chunk_size_for(size)
    assert chunk == 1 << 20 and -(-size // chunk) <= manifests.MAX_CHUNKS


def test_an_unreadable_floor_refuses_updates_rather_than_guess(tmp_path: Path, blob: Path) -> None:
    floor = tmp_path / "models" / "floor.json"
    floor.parent.mkdir()
    floor.write_text("{not json")
    m = make_manifest(blob, chunk_size=CHUNK, now=NOW, version=1 << 40)
    refusal = assembler_at(tmp_path).on_manifest(manifest_bytes(m))
    assert refusal is not None and f"model-update floor {floor} is unreadable" in refusal
    assert floor.read_text() == "{not json"


def test_the_floor_is_written_before_the_transfer_starts(tmp_path: Path, blob: Path) -> None:
    m = make_manifest(blob, chunk_size=CHUNK, now=NOW, version=42)
    assembler = assembler_at(tmp_path)
    assert assembler.on_manifest(manifest_bytes(m)) is None
    assert json.loads((tmp_path / "models" / "floor.json").read_text()) == {
        "version": 42,
        "sha256": m.sha256,
    }
    assert not list((tmp_path / "models").glob("*.tmp"))
