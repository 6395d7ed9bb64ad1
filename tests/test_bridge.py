"""config/mosquitto/bridge.conf on two real Mosquittos: a site broker bridged to an upstream.

The site broker runs the file with only the upstream's address, the TLS files and the retry
delay changed; the agent is a real ``edge-agent run`` at the site. What the agents decided
and their status arrive upstream under ``sites/site-1/``; raw readings and commands do not.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.broker import Mosquitto
from tests.conftest import AgentProcess, Collector, agent_config, wait_for
from tests.helpers import ROOT

pytestmark = pytest.mark.broker

BRIDGE = ROOT / "config" / "mosquitto" / "bridge.conf"
TLS_LINES = ("bridge_cafile", "bridge_certfile", "bridge_keyfile", "bridge_tls_version")
UP = "sites/site-1/"  # the remote prefix of bridge.conf
BRIDGE_STATE = "$SYS/broker/connection/edge-site-1/state"
STATUS = "edge/agents/test-agent/status"
RESULTS = "edge/agents/test-agent/results/climate"
TEMPERATURE = "edge/sensors/livingroom-1/temperature"
HUMIDITY = "edge/sensors/livingroom-1/humidity"
SET = "edge/actuators/livingroom-hvac/hvac/set"
ERRORS = "edge/agents/test-agent/errors"
# What may arrive upstream at all.
ALLOWED = re.compile(r"sites/site-1/edge/(agents/[^/]+/(results/.+|status)|decisions(/.*)?)")


def bridge_config(upstream_port: int) -> str:
    """bridge.conf pointed at a plain-MQTT upstream on loopback, retrying every second."""
    lines = []
    for line in BRIDGE.read_text().splitlines():
        key = line.split(" ", 1)[0]
        if key in TLS_LINES:
            continue
        if key == "address":
            line = f"address 127.0.0.1:{upstream_port}"
        elif key == "restart_timeout":
            line = "restart_timeout 1"
        lines.append(line)
    return "\n".join(lines)


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Mosquitto]:
    workdir = tmp_path / "upstream"
    workdir.mkdir()
    with Mosquitto(workdir=workdir) as b:
        yield b


@pytest.fixture
def site(
    tmp_path: Path, upstream: Mosquitto, collector_factory: Callable[..., Collector]
) -> Iterator[Mosquitto]:
    workdir = tmp_path / "site"
    workdir.mkdir()
    with Mosquitto(workdir=workdir, extra=bridge_config(upstream.port)) as b:
        bridge_up(upstream, collector_factory)
        yield b


def bridge_up(upstream: Mosquitto, collector_factory: Callable[..., Collector]) -> None:
    """Wait for the bridge's own notification (retained, "1" while connected) upstream."""
    state = collector_factory(upstream.port, BRIDGE_STATE)
    wait_for(
        lambda: [p for t, p, _ in state.messages if t == BRIDGE_STATE][-1:] == [b"1"],
        what="the bridge connected upstream",
    )


def topics(c: Collector) -> list[str]:
    return [t for t, _, _ in c.messages]


def test_the_config_sends_results_decisions_and_status_up_and_nothing_down() -> None:
    lines = [ln.split() for ln in BRIDGE.read_text().splitlines() if ln.startswith("topic ")]
    assert sorted(ln[1] for ln in lines) == ["agents/+/results/#", "agents/+/status", "decisions/#"]
    assert {tuple(ln[2:]) for ln in lines} == {("out", "1", "edge/", f"{UP}edge/")}
    assert re.search(r"^cleansession false$", BRIDGE.read_text(), re.M)


def test_an_agents_status_and_results_go_up_its_readings_commands_and_errors_stay(
    tmp_path: Path,
    upstream: Mosquitto,
    site: Mosquitto,
    agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector],
) -> None:
    fleet = collector_factory(upstream.port, "#")
    local = collector_factory(site.port, SET, RESULTS, ERRORS)
    agent = agent_factory(agent_config(tmp_path, site.port, policies=True, policy__every="2s"))
    wait_for(
        lambda: any(s["state"] == "online" for s in fleet.on(UP + STATUS)),
        timeout=60,
        what="the agent's online status upstream",
    )
    for i in range(5):  # a hot room: the agent stores these, decides and sends a command
        local.publish(TEMPERATURE, json.dumps({"value": 27.5, "seq": i}))
        local.publish(HUMIDITY, json.dumps({"value": 50.0, "seq": i}))
    local.publish(TEMPERATURE, b"not a reading")  # an error event, with the payload in it
    wait_for(lambda: bool(local.on(SET)), timeout=60, what="a command at the site")
    wait_for(lambda: bool(local.on(ERRORS)), what="an error event at the site")
    wait_for(lambda: bool(fleet.on(UP + RESULTS)), what="the result upstream")
    assert fleet.on(UP + RESULTS)[0] == local.on(RESULTS)[0]
    assert fleet.on(UP + RESULTS)[0]["action"] == "cool"

    agent.signal(signal.SIGTERM)  # its offline status is published after all of the above
    assert agent.wait() == 0
    wait_for(
        lambda: fleet.on(UP + STATUS)[-1]["state"] == "offline", what="offline status upstream"
    )
    assert [t for t in topics(fleet) if not ALLOWED.fullmatch(t)] == []
    assert not any(
        t.endswith(("/temperature", "/humidity", "/set", "/errors")) for t in topics(fleet)
    )


def test_decisions_and_status_stay_retained_upstream(
    upstream: Mosquitto, site: Mosquitto, collector_factory: Callable[..., Collector]
) -> None:
    pub = collector_factory(site.port)
    decision = {"policy": "climate", "action": "cool", "value": 22.0}
    status = {"state": "online"}
    pub.client.publish(STATUS, json.dumps(status), qos=1, retain=True).wait_for_publish(10)
    pub.client.publish(
        "edge/decisions/climate", json.dumps(decision), qos=1, retain=True
    ).wait_for_publish(10)
    fleet = collector_factory(upstream.port, f"{UP}#")
    wait_for(lambda: len(fleet.messages) == 2, what="the retained decision and status upstream")
    got = {t: (json.loads(p), retained) for t, p, retained in fleet.messages}
    assert got == {
        f"{UP}edge/decisions/climate": (decision, True),
        UP + STATUS: (status, True),
    }


def test_what_the_site_publishes_while_the_uplink_is_down_arrives_once_it_is_back(
    upstream: Mosquitto, site: Mosquitto, collector_factory: Callable[..., Collector]
) -> None:
    # The fleet's consumer keeps a persistent session upstream, so it misses nothing either.
    fleet = collector_factory(upstream.port, f"{UP}#", client_id="fleet", persistent=True)
    pub = collector_factory(site.port)
    pub.publish(RESULTS, json.dumps({"n": -1})).wait_for_publish(10)
    wait_for(lambda: len(fleet.messages) == 1, what="a result before the outage")
    upstream.stop()
    for n in range(50):
        pub.publish(RESULTS, json.dumps({"n": n})).wait_for_publish(10)
    upstream.start()  # same port; the bridge retries every second
    wait_for(lambda: len(fleet.messages) >= 51, timeout=60, what="the results queued at the site")
    assert [r["n"] for r in fleet.on(UP + RESULTS)] == list(range(-1, 50))
