"""Shared fixtures: a real Mosquitto on a free loopback port and a real agent process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.broker import Mosquitto
from agent.config import read_yaml
from agent.policy.signing import generate_key_file
from tests.helpers import ROOT

EXAMPLE_CONFIG = ROOT / "config" / "agent.example.yaml"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    workdir = tmp_path / "broker"
    workdir.mkdir()
    with Mosquitto(workdir=workdir) as b:
        yield b


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.05)


class Collector:
    """A plain paho client that records what arrives on some topic filters."""

    def __init__(
        self,
        port: int,
        *filters: str,
        client_id: str = "",
        protocol: MQTTProtocolVersion = paho.MQTTv5,
        persistent: bool = False,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol
        )
        self.client.on_message = self._on_message
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 1)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.filters = filters
        self.client.on_connect = self._subscribe  # again after a broker restart
        props = None
        if persistent:  # the broker keeps our session and queues for us while we are away
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=not persistent, properties=props)
        self.client.loop_start()

    def _subscribe(self, client: paho.Client, *args: Any) -> None:
        for f in self.filters:
            client.subscribe(f, qos=1)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), msg.retain))

    def on(self, topic: str) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(p) for t, p, _ in self.messages if t == topic]

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> paho.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def collector_factory() -> Iterator[Callable[..., Collector]]:
    made: list[Collector] = []

    def make(port: int, *filters: str, **kw: Any) -> Collector:
        c = Collector(port, *filters, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def wait_online(watch: Collector, agent: str = "test-agent", since: int = 0,
                timeout: float = 60.0) -> None:
    """Until ``agent`` publishes an online status (after the first ``since`` of its statuses)."""
    topic = f"edge/agents/{agent}/status"
    wait_for(lambda: any(s.get("state") == "online" for s in watch.on(topic)[since:]),
             timeout, f"{agent} online")


def start_agent(factory: Callable[[Path], AgentProcess], config: Path, watch: Collector,
                agent: str = "test-agent", timeout: float = 60.0) -> AgentProcess:
    """Start an agent process and return it once it says it is online (``watch`` must be
    subscribed to its status topic)."""
    seen = len(watch.on(f"edge/agents/{agent}/status"))
    process = factory(config)
    wait_online(watch, agent, seen, timeout)
    return process


def agent_config(tmp_path: Path, port: int, *, policies: bool = False, **overrides: Any) -> Path:
    """The example config pointed at the test broker and a temp data dir; ``policies`` keeps
    the example's climate policy and gives it a fresh command key (tmp_path/command.key)."""
    data = read_yaml(EXAMPLE_CONFIG.read_text())
    data["agent"]["id"] = "test-agent"
    data["agent"]["data_dir"] = str(tmp_path / "data")
    data["agent"]["status_interval"] = "1s"
    data["mqtt"]["port"] = port
    data["mqtt"]["reconnect"] = {"min_delay": "1s", "max_delay": "2s"}
    data["sensors"]["temperature"].pop("deadband", None)
    if policies:
        key = tmp_path / "command.key"
        if not key.exists():
            generate_key_file(key)
        data["security"]["command_key_file"] = str(key)
    else:
        data["policies"] = []
        data["interlocks"] = []
    for dotted, value in overrides.items():
        section, name = dotted.split("__", 1)
        if section == "policy":
            data["policies"][0][name] = value
        else:
            data[section][name] = value
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class AgentProcess:
    """``edge-agent run`` as a real child process."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "-c", str(self.config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        self._log.close()
        return code

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def agent_factory(tmp_path: Path) -> Iterator[Callable[[Path], AgentProcess]]:
    made: list[AgentProcess] = []

    def make(config: Path) -> AgentProcess:
        a = AgentProcess(config, tmp_path / f"agent-{len(made)}.log").start()
        made.append(a)
        return a

    yield make
    for a in made:
        if a.alive():
            a.kill()


def member_config(tmp_path: Path, port: int, agent_id: str, key: Path, *,
                  roster: Path | None = None, identity: Path | None = None, model: bool = True,
                  **policy: Any) -> Path:
    """A member of a peer group: the example config with only its first policy (``policy``
    updates it: engine, every, peers, safety...), data in tmp_path/agent_id, the shared command
    ``key`` (made if missing), the site roster and this agent's identity if given; ``model``
    false runs rules only (no model to load: starts at once)."""
    data = read_yaml(EXAMPLE_CONFIG.read_text())
    data["agent"].update(id=agent_id, data_dir=str(tmp_path / agent_id), status_interval="1s")
    data["mqtt"].update(port=port, reconnect={"min_delay": "1s", "max_delay": "2s"})
    if not key.exists():
        generate_key_file(key)
    data["security"]["command_key_file"] = str(key)
    if roster is not None:
        data["security"]["roster_file"] = str(roster)
    if identity is not None:
        data["security"]["identity_key_file"] = str(identity)
    if not model:
        data["model"]["path"] = str(tmp_path / "no-model.gguf")
    first = data["policies"][0]
    first.update(policy)
    data["policies"], data["interlocks"] = [first], []
    path = tmp_path / f"{agent_id}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def peer_identities(directory: Path, agents: list[str]) -> tuple[Path, dict[str, Path]]:
    """What an operator does for a site: ``edge-agent keygen --identity`` on every agent and a
    roster listing their public keys. Returns (the roster file, each agent's private key file)."""
    from agent.peers.identity import write_identity

    directory.mkdir(parents=True, exist_ok=True)
    keys, lines = {}, []
    for agent in agents:
        keys[agent] = directory / f"{agent}.key"
        lines.append(f"{agent}: {write_identity(keys[agent], overwrite=True)}")
    roster = directory / "roster.yaml"
    roster.write_text("\n".join(lines) + "\n")
    return roster, keys
