"""Attacks on a peer group over a real broker, against real agents with a roster: a client that
can publish on the broker but holds no roster key cannot vote, settle windows or lead.

Each attack came over the wire to ``edge-agent run`` processes; each test failed on the code
before identities and rosters (561b1ce), where the same messages were believed."""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.broker import Mosquitto
from agent.peers.identity import Identity
from tests.conftest import AgentProcess, Collector, member_config, peer_identities, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.slow]

EVERY = 2.0
DECISIONS = "edge/decisions/climate"
NONE = "edge/decisions/climate/none"
SET = "edge/actuators/livingroom-hvac/hvac/set"
INVENTED = [f"x{i:02d}" for i in range(20)]


def attacked_member(tmp_path: Path, port: int, agent: str, *, quorum: int, roster: Path,
                    identity: Path) -> Path:
    return member_config(
        tmp_path, port, agent, tmp_path / "command.key", roster=roster, identity=identity,
        model=False, engine="rules", every=f"{EVERY:g}s",
        peers={"group": "livingroom", "method": "mean", "quorum": quorum, "deadline": "1s"},
        safety={"min_interval": "1s", "min_dwell": "1s", "max_per_hour": 3600})


def status(watch: Collector, agent: str) -> dict[str, Any]:
    statuses = watch.on(f"edge/agents/{agent}/status")
    return statuses[-1] if statuses else {}


def online(watch: Collector, *agents: str) -> Callable[[], bool]:
    return lambda: all(status(watch, a).get("state") == "online" for a in agents)


def heat(watch: Collector) -> None:
    for i in range(3):
        watch.publish("edge/sensors/livingroom-1/temperature",
                      json.dumps({"value": 27.5, "seq": int(time.time() * 1000) + i}))


def signed(payload: dict[str, Any], by: Identity | None) -> str:
    return json.dumps(payload if by is None else by.sign(payload))


def forged_status(agent: str) -> dict[str, Any]:
    return {"state": "online", "ts": time.time(), "groups": ["livingroom"], "uptime_s": 1e6}


def forged_result(agent: str, window_end: float) -> dict[str, Any]:
    return {"agent": agent, "policy": "climate", "ts": window_end, "window_end": window_end,
            "action": "heat", "value": 28.0, "confidence": 1.0,
            "scores": {"cool": 0.0, "heat": 1.0, "off": 0.0}, "model_sha256": None,
            "group": "livingroom"}


@pytest.fixture
def attacker() -> Identity:
    """A key of the attacker's own: well formed, but in no roster."""
    return Identity.generate("attacker")


@pytest.fixture
def flood(broker: Mosquitto, collector_factory: Callable[..., Collector],
          attacker: Identity) -> Iterator[Callable[[], None]]:
    """Starts 20 invented members: their statuses (retained, refreshed) and a result of each in
    every window, for heat; half unsigned, half signed by the attacker's key under their id."""
    client = collector_factory(broker.port)
    stop = threading.Event()

    def key_for(i: int) -> Identity | None:
        return None if i % 2 else Identity(INVENTED[i], attacker.key)

    def run() -> None:
        last = None
        while not stop.is_set():
            window = math.floor(time.time() / EVERY)
            if window != last:
                last = window
                for i, agent in enumerate(INVENTED):
                    client.client.publish(f"edge/agents/{agent}/status",
                                          signed(forged_status(agent), key_for(i)), 1, True)
                time.sleep(0.1)
                for i, agent in enumerate(INVENTED):
                    client.publish(f"edge/agents/{agent}/results/climate",
                                   signed(forged_result(agent, window * EVERY), key_for(i)))
            stop.wait(0.05)

    thread = threading.Thread(target=run, daemon=True)
    yield thread.start
    stop.set()
    thread.join(5)


@pytest.fixture
def repeat() -> Iterator[Callable[[Callable[[], None]], None]]:
    """``repeat(fn)``: call fn every half second until the test ends (an attacker that keeps
    its forgeries fresh)."""
    stop = threading.Event()
    threads = []

    def start(fn: Callable[[], None]) -> None:
        def run() -> None:
            while not stop.is_set():
                fn()
                stop.wait(0.5)

        threads.append(threading.Thread(target=run, daemon=True))
        threads[-1].start()

    yield start
    stop.set()
    for t in threads:
        t.join(5)


def test_twenty_invented_members_neither_outvote_nor_make_the_quorum(
        tmp_path: Path, broker: Mosquitto, agent_factory: Callable[[Path], AgentProcess],
        collector_factory: Callable[..., Collector], flood: Callable[[], None]) -> None:
    roster, keys = peer_identities(tmp_path / "site", ["a1", "a2"])
    watch = collector_factory(broker.port, "edge/agents/+/status", DECISIONS, NONE, SET)
    agents = {a: agent_factory(attacked_member(tmp_path, broker.port, a, quorum=2, roster=roster,
                                             identity=keys[a])) for a in ("a1", "a2")}
    wait_for(online(watch, "a1", "a2"), 60, "a1 and a2 online")
    flood()
    heat(watch)
    wait_for(lambda: len(watch.on(DECISIONS)) >= 3, 60, "three group decisions")
    for d in watch.on(DECISIONS):  # the two real members decided, by themselves
        assert d["members"] == ["a1", "a2"] and d["action"] == "cool", d
    assert all(c["action"] == "cool" for c in watch.on(SET))
    refused = status(watch, "a1")["peers"]["refused"]
    assert refused.get("status", 0) >= 20 and refused.get("result", 0) >= 20, refused
    assert status(watch, "a1")["peers"]["members"] == {"livingroom": ["a1", "a2"]}

    agents["a2"].kill()  # one real member left: 20 invented ones do not make quorum 2
    wait_for(lambda: any(n["members"] == ["a1"] for n in watch.on(NONE)), 30,
             "a window without quorum")
    decided = len(watch.on(DECISIONS))
    time.sleep(3 * EVERY)
    assert len(watch.on(DECISIONS)) == decided
    assert all(set(n["members"]) <= {"a1", "a2"} for n in watch.on(NONE))
    assert all(c["action"] == "cool" for c in watch.on(SET))
    assert "Traceback" not in agents["a1"].log()


def test_forged_outcomes_of_future_windows_do_not_settle_them(
        tmp_path: Path, broker: Mosquitto, agent_factory: Callable[[Path], AgentProcess],
        collector_factory: Callable[..., Collector], attacker: Identity) -> None:
    roster, keys = peer_identities(tmp_path / "site", ["a1"])
    watch = collector_factory(broker.port, "edge/agents/+/status", DECISIONS)
    agent = agent_factory(attacked_member(tmp_path, broker.port, "a1", quorum=1, roster=roster,
                                        identity=keys["a1"]))
    wait_for(online(watch, "a1"), 60, "a1 online")
    now = math.floor(time.time() / EVERY)
    future = range(now + 1, now + 8)
    as_a1 = Identity("a1", attacker.key)  # claims to be the leader, with the wrong key
    for i, window in enumerate(future):
        outcome = {"policy": "climate", "ts": window * EVERY, "action": None,
                   "reason": "forged", "members": ["a1"], "method": "mean", "quorum": 1,
                   "group": "livingroom", "window": window, "leader": "a1"}
        watch.publish(f"{DECISIONS}/none", signed(outcome, as_a1 if i % 2 else None))
    heat(watch)
    wait_for(lambda: len({d["window"] for d in watch.on(DECISIONS)} & set(future)) >= 3,
             8 * EVERY + 30, "decisions for the windows the forgeries claimed")
    assert all(d["leader"] == "a1" for d in watch.on(DECISIONS))
    assert status(watch, "a1")["peers"]["refused"].get("outcome", 0) >= 7
    assert "Traceback" not in agent.log()


def test_a_retained_status_of_an_invented_agent_does_not_make_it_leader(
        tmp_path: Path, broker: Mosquitto, agent_factory: Callable[[Path], AgentProcess],
        collector_factory: Callable[..., Collector], attacker: Identity,
        repeat: Callable[[Callable[[], None]], None]) -> None:
    roster, keys = peer_identities(tmp_path / "site", ["a1"])
    watch = collector_factory(broker.port, "edge/agents/+/status", DECISIONS)

    def forge() -> None:  # "a0" sorts before every real member; kept fresh, retained
        watch.client.publish("edge/agents/a0/status", signed(forged_status("a0"), None), 1,
                             True)
        watch.client.publish("edge/agents/a00/status",
                             signed(forged_status("a00"), Identity("a00", attacker.key)), 1,
                             True)

    repeat(forge)
    agent = agent_factory(attacked_member(tmp_path, broker.port, "a1", quorum=1, roster=roster,
                                        identity=keys["a1"]))
    wait_for(online(watch, "a1"), 60, "a1 online")
    heat(watch)
    wait_for(lambda: len(watch.on(DECISIONS)) >= 2, 30, "a1 deciding as the leader")
    assert all(d["leader"] == "a1" for d in watch.on(DECISIONS))
    assert status(watch, "a1")["peers"]["members"] == {"livingroom": ["a1"]}
    assert "Traceback" not in agent.log()


def test_sighup_reloads_the_roster_and_a_new_member_counts(
        tmp_path: Path, broker: Mosquitto, agent_factory: Callable[[Path], AgentProcess],
        collector_factory: Callable[..., Collector]) -> None:
    full, keys = peer_identities(tmp_path / "site", ["a1", "a2"])
    first = tmp_path / "site" / "roster-a1.yaml"  # the roster before a2 was added
    first.write_text(full.read_text().splitlines()[0] + "\n")
    watch = collector_factory(broker.port, "edge/agents/+/status")
    a1 = agent_factory(attacked_member(tmp_path, broker.port, "a1", quorum=1, roster=first,
                                     identity=keys["a1"]))
    agent_factory(attacked_member(tmp_path, broker.port, "a2", quorum=1, roster=full,
                                identity=keys["a2"]))
    wait_for(online(watch, "a1", "a2"), 60, "a1 and a2 online")
    wait_for(lambda: status(watch, "a2").get("peers", {}).get("members")
             == {"livingroom": ["a1", "a2"]}, 20, "a2 seeing both")
    wait_for(lambda: status(watch, "a1")["peers"]["refused"].get("status", 0) >= 2, 20,
             "a1 refusing a2, which is not in its roster")
    assert status(watch, "a1")["peers"]["members"] == {"livingroom": ["a1"]}

    first.write_text(full.read_text())  # the operator distributes the new roster
    a1.signal(signal.SIGHUP)
    wait_for(lambda: status(watch, "a1")["peers"]["members"] == {"livingroom": ["a1", "a2"]},
             20, "a1 counting a2 after the reload")
    assert status(watch, "a1")["peers"]["roster"] == 2
    assert "roster reloaded" in a1.log()
