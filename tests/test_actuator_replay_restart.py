"""Attack 9 (issue 12): a command captured off the broker is replayed after the actuator
restarts, within its TTL. The simulated firmware keeps its nonce memory in its state dir
(written atomically) and, when it has none (no state dir, or the file lost), refuses every
command made before it booted. Each test runs on a real broker."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.broker import Mosquitto
from agent.policy.signing import make_command
from firmware_sim.house import House
from tests.conftest import Collector, wait_for
from tests.test_actuators import HVAC_SET, KEY, SCENARIO

pytestmark = pytest.mark.broker


def captured(now: float) -> bytes:
    return json.dumps(make_command(
        device="room-hvac", actuator="hvac", action="cool", value=22.0, policy="climate",
        agent="test-agent", reason="too warm", key=KEY, now=now, ttl=30.0,
    )).encode()


def boot(broker: Mosquitto, state_dir: Path | None) -> House:
    return House.from_scenario(SCENARIO, "127.0.0.1", broker.port, key=KEY, speed=60,
                               state_dir=state_dir).start()


def deliver(house: House, sender: Collector, payload: bytes) -> None:
    seen = len(house.commands) + len(house.rejections)
    sender.publish(HVAC_SET, payload).wait_for_publish(10)
    wait_for(lambda: len(house.commands) + len(house.rejections) > seen, 10, "the verdict")


def restart_and_replay(
    broker: Mosquitto, sender: Collector, state_dir: Path | None
) -> tuple[House, bytes]:
    first = boot(broker, state_dir)
    payload = captured(time.time())
    deliver(first, sender, payload)
    assert [c.command_id for c in first.commands] == [json.loads(payload)["id"]]
    first.stop()  # the reboot: a new firmware process, same device
    time.sleep(0.05)
    second = boot(broker, state_dir)
    deliver(second, sender, payload)  # the capture, replayed well inside its 30 s TTL
    return second, payload


def test_a_replay_after_a_restart_is_refused_with_nonces_kept_on_disk(
    tmp_path: Path, broker: Mosquitto, collector_factory: Callable[..., Collector]
) -> None:
    sender = collector_factory(broker.port)
    house, _ = restart_and_replay(broker, sender, tmp_path / "state")
    try:
        assert house.commands == []
        assert [r.reason for r in house.rejections] == ["replayed"]
        fresh = captured(time.time())  # a new command is still taken
        deliver(house, sender, fresh)
        assert [c.command_id for c in house.commands] == [json.loads(fresh)["id"]]
    finally:
        house.stop()


def test_a_replay_after_a_restart_without_memory_is_refused_as_made_before_boot(
    broker: Mosquitto, collector_factory: Callable[..., Collector]
) -> None:
    sender = collector_factory(broker.port)
    house, _ = restart_and_replay(broker, sender, None)
    try:
        assert house.commands == [], "the captured command was applied again after a reboot"
        assert [r.reason for r in house.rejections] == ["made before boot"]
        fresh = captured(time.time() + 0.01)
        deliver(house, sender, fresh)
        assert [c.command_id for c in house.commands] == [json.loads(fresh)["id"]]
    finally:
        house.stop()


def test_an_unreadable_memory_starts_again_from_boot(tmp_path: Path) -> None:
    from firmware_sim.nonces import StoredNonces

    path = tmp_path / "hvac.nonces"
    kept = StoredNonces(path, 1000.0)
    assert kept.add("n1", 1030.0, 1000.0)
    kept.save(1000.0)
    again = StoredNonces(path, 1010.0)  # a restart inside the TTL
    assert (again.floor, again.add("n1", 1030.0, 1010.0)) == (1000.0, False)
    path.write_text("{half a fi")
    lost = StoredNonces(path, 1020.0)
    assert lost.floor == 1020.0 and len(lost) == 0
    assert not path.with_name(path.name + ".tmp").exists()
