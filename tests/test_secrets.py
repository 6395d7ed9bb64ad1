"""Secrets never leave the agent: not in its log, not in anything it publishes.

A real agent runs with a broker password (a password file, a broker that refuses anonymous
clients), a command key and a peer identity key, at DEBUG, leads its one-member group and
commands an actuator; then neither its log nor any payload it published holds the bytes of any
of the three secrets, in any of the forms they can take."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.broker import Mosquitto
from agent.config import read_yaml
from agent.policy.signing import generate_key_file
from tests.conftest import (
    EXAMPLE_CONFIG,
    AgentProcess,
    Collector,
    peer_identities,
    wait_for,
)

pytestmark = pytest.mark.broker

PASSWORD = "pw-9f3c1e77d2a04b6e"
USER = "pi-livingroom"
STATUS = f"edge/agents/{USER}/status"


@pytest.fixture
def locked_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    workdir = tmp_path / "broker"
    workdir.mkdir()
    passwd = workdir / "passwd"
    passwd.touch()
    for user in (USER, "watcher"):
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, PASSWORD], check=True)
    with Mosquitto(workdir=workdir, extra=f"allow_anonymous false\npassword_file {passwd}") as b:
        yield b


def forms(secret: bytes) -> set[bytes]:
    """The ways a secret could show: as it is, in hex, base64, base64url, and its repr."""
    return {secret, secret.hex().encode(), base64.b64encode(secret),
            base64.urlsafe_b64encode(secret).rstrip(b"="), repr(secret).encode()[2:-1]}


def test_no_secret_in_the_log_or_on_the_wire(
    tmp_path: Path,
    locked_broker: Mosquitto,
    agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector],
) -> None:
    (tmp_path / "password").write_text(PASSWORD + "\n")
    command_key = generate_key_file(tmp_path / "command.key")
    roster, keys = peer_identities(tmp_path / "ids", [USER])
    identity = serialization.load_pem_private_key(keys[USER].read_bytes(), None)
    assert isinstance(identity, Ed25519PrivateKey)
    raw_identity = identity.private_bytes(serialization.Encoding.Raw,
                                          serialization.PrivateFormat.Raw,
                                          serialization.NoEncryption())
    pem_lines = [ln for ln in keys[USER].read_bytes().splitlines() if b"-----" not in ln]

    data = read_yaml(EXAMPLE_CONFIG.read_text())
    data["agent"].update(id=USER, data_dir=str(tmp_path / "data"), status_interval="1s",
                         log_level="DEBUG")
    data["mqtt"].update(port=locked_broker.port, username=USER,
                        password_file=str(tmp_path / "password"),
                        reconnect={"min_delay": "1s", "max_delay": "2s"})
    data["model"]["path"] = str(tmp_path / "no-model.gguf")  # rules only: starts at once
    data["security"].update(command_key_file=str(tmp_path / "command.key"),
                            identity_key_file=str(keys[USER]), roster_file=str(roster))
    policy = data["policies"][0]
    policy.update(engine="rules", every="1s",
                  peers={"group": "livingroom", "method": "mean", "quorum": 1, "deadline": "1s"},
                  safety={"min_interval": "1s", "min_dwell": "1s", "max_per_hour": 3600})
    data["policies"], data["interlocks"] = [policy], []
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump(data))

    watch = collector_factory(locked_broker.port, "#", username="watcher", password=PASSWORD)
    agent = agent_factory(config)
    wait_for(lambda: any(s.get("state") == "online" for s in watch.on(STATUS)), 30, "online")
    sensor = policy["inputs"][0] if isinstance(policy["inputs"][0], str) else None
    assert sensor is not None
    topic = f"edge/sensors/{sensor}"
    deadline = time.monotonic() + 30
    while not any(t.endswith("/set") for t, _, _ in watch.messages):  # a signed command
        assert time.monotonic() < deadline, "no command within 30s"
        watch.publish(topic, json.dumps({"value": 30.0, "ts": time.time()}))
        time.sleep(0.5)
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0

    log = agent.log().encode()
    assert b"DEBUG" in log and b"connected to 127.0.0.1" in log  # a log that says things
    published = b"\n".join(p for _, p, _ in watch.messages)
    assert b'"sig"' in published or b"signature" in published  # signed with the keys
    secrets = {
        "broker password": forms(PASSWORD.encode()),
        "command key": forms(command_key) | forms(bytes.fromhex(command_key.decode())),
        "identity key": forms(raw_identity) | set(pem_lines),
    }
    for what, shapes in secrets.items():
        for shape in shapes:
            assert shape not in log, f"the {what} is in the agent's log"
            assert shape not in published, f"the {what} was published"
