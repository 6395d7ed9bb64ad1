"""Four peers on a real Mosquitto, each the product's PeerService (agent/service/peers.py):
group decisions match the math, exactly one member (the lowest id) publishes each and acts on
it; a leader that dies right after publishing is not published again by the next one, and when
a leader dies before closing its round (its last will says offline) the next lowest takes over
without losing a window or publishing one twice."""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.broker import Mosquitto
from agent.config import load_config
from agent.mqtt import Message
from agent.peers.aggregate import GroupDecision, Outcome, aggregate, parse_result
from agent.peers.group import window_of
from agent.service.peers import PeerService
from tests.conftest import Collector, agent_config, wait_for

pytestmark = pytest.mark.broker

PREFIX = "edge"
GROUP = "livingroom"
POLICY = "climate"
ACTIONS = ["cool", "heat", "off"]
EVERY = 1.5  # the service keeps a closed round for a take-over this long
DEADLINE = 0.3
QUORUM = 2


def scores_for(agent: str, window: int) -> tuple[str, dict[str, float], float | None]:
    rng = random.Random(f"{agent}/{window}")
    raw = [rng.random() ** 2 for _ in ACTIONS]
    scores = {a: v / math.fsum(raw) for a, v in zip(ACTIONS, raw, strict=True)}
    action = max(scores, key=lambda a: scores[a])
    return action, scores, round(rng.uniform(18, 26), 1) if action != "off" else None


def member_service(tmp_path: Path, port: int, agent: str) -> PeerService:
    """The product's peer service of an agent whose climate policy is in GROUP."""
    cfg = agent_config(tmp_path / agent, port, policies=True, agent__id=agent,
                       policy__every=f"{EVERY}s", policy__engine="rules",
                       policy__peers={"group": GROUP, "method": "mean", "quorum": QUORUM,
                                      "deadline": f"{DEADLINE}s"})
    return PeerService(load_config(cfg), agent, publish=lambda *a, **k: None,
                       act=lambda d: None)


class Member:
    """An agent's peer layer as the runtime wires it: :class:`PeerService` fed every message
    of its filters, ticked, its publications sent, its status kept fresh and retained with an
    offline will; only the transport is a plain paho client."""

    def __init__(self, tmp_path: Path, port: int, agent: str) -> None:
        (tmp_path / agent).mkdir()
        self.agent = agent
        self.started = time.time()
        self.service = member_service(tmp_path, port, agent)
        self.service.publish = self._publish
        self.service.act = self._act
        self.acted: list[GroupDecision] = []
        self.computed: dict[int, Outcome] = {}
        self.published: list[tuple[float, str]] = []
        self.paused = False
        self.running = True
        self.status_topic = f"{PREFIX}/agents/{agent}/status"
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=agent, protocol=paho.MQTTv5
        )
        self.client.will_set(self.status_topic, self._status("offline"), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.ticker = threading.Thread(target=self._tick_loop, daemon=True)
        self.ticker.start()

    def _note_computed(self) -> None:  # the service prunes old rounds: note them as they close
        for window, round_ in list(self.service.trackers[POLICY].rounds.items()):
            if round_.outcome is not None:
                self.computed[window] = round_.outcome

    def _status(self, state: str) -> bytes:
        status = {"state": state, "ts": time.time(), "groups": self.service.groups,
                  "uptime_s": time.time() - self.started}
        return self.service.outgoing(self.status_topic, json.dumps(status).encode())

    def _publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain)
        self.published.append((time.time(), topic))

    def _act(self, decision: GroupDecision) -> None:
        self.acted.append(decision)

    def _on_connect(self, client: paho.Client, *args: Any) -> None:
        client.subscribe([(f, 1) for f in self.service.filters()])
        client.publish(self.status_topic, self._status("online"), qos=1, retain=True)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        self.service.handle(Message(msg.topic, bytes(msg.payload), msg.qos, msg.mid,
                                    time.time(), 1))

    def _tick_loop(self) -> None:
        last_status = time.monotonic()
        while self.running:
            if not self.paused:
                self.service.tick()
                self._note_computed()
            if time.monotonic() - last_status >= 1.0:  # status_interval: alive, even paused
                self.client.publish(self.status_topic, self._status("online"), qos=1,
                                    retain=True)
                last_status = time.monotonic()
            time.sleep(0.02)

    def publish_result(self, window_end: float) -> None:
        action, scores, value = scores_for(self.agent, window_of(window_end, EVERY))
        payload = {
            "agent": self.agent,
            "policy": POLICY,
            "ts": window_end,
            "window_end": window_end,
            "action": action,
            "value": value,
            "confidence": scores[action],
            "scores": scores,
            "model_sha256": None,
        }
        self.client.publish(
            f"{PREFIX}/agents/{self.agent}/results/{POLICY}", json.dumps(payload), qos=1
        )

    def pause(self) -> None:
        self.paused = True
        time.sleep(0.05)  # a tick in progress ends

    def die(self) -> None:
        """Gone without a goodbye: the broker sees the connection drop and sends the will."""
        self.running = False
        self.ticker.join()
        self.client.loop_stop()
        sock = self.client.socket()
        assert sock is not None
        sock.close()

    def close(self) -> None:
        self.running = False
        self.ticker.join()
        self.client.publish(
            self.status_topic, self._status("offline"), qos=1, retain=True
        ).wait_for_publish(3)
        self.client.disconnect()
        self.client.loop_stop()


def next_window_start() -> tuple[int, float]:
    window = math.floor(time.time() / EVERY) + 1
    time.sleep(max(0.0, window * EVERY + 0.01 - time.time()))
    return window, window * EVERY + 0.005


def decisions(collector: Collector) -> list[dict[str, Any]]:
    return collector.on(f"{PREFIX}/decisions/{POLICY}")


def expected_decision(collector: Collector, window: int) -> GroupDecision:
    results = [parse_result(p) for t, p, _ in collector.messages if "/results/" in t]
    mine = [r for r in results if window_of(r.window_end, EVERY) == window]
    out = aggregate(mine, "mean", QUORUM, ACTIONS, policy=POLICY)
    assert isinstance(out, GroupDecision)
    return out


def test_one_leader_publishes_each_decision_and_the_next_takes_over(
    tmp_path: Path, broker: Mosquitto, collector_factory: Callable[..., Collector]
) -> None:
    watch = collector_factory(
        broker.port, f"{PREFIX}/decisions/#", f"{PREFIX}/agents/+/results/{POLICY}"
    )
    peers = {name: Member(tmp_path, broker.port, name) for name in ("pi-a", "pi-b", "pi-c", "pi-d")}
    try:
        for p in peers.values():
            wait_for(lambda p=p: len(p.service.membership.members(GROUP)) == 4, 10, "membership")  # type: ignore[misc]
        windows = []
        for _ in range(2):  # all four alive: pi-a leads
            window, end = next_window_start()
            windows.append(window)
            for p in peers.values():
                p.publish_result(end)
        wait_for(lambda: len(decisions(watch)) >= 2, 10, "the first two decisions")

        # pi-a publishes the next decision and dies at once: pi-b, leader now, has the same
        # round closed and must not publish it again
        window, end = next_window_start()
        windows.append(window)
        for p in peers.values():
            p.publish_result(end)
        wait_for(lambda: any(d["window"] == window for d in decisions(watch)), 5,
                 "pi-a's decision")
        peers["pi-a"].die()
        wait_for(lambda: "pi-a" not in peers["pi-b"].service.membership.online(), 5, "the will")
        time.sleep(EVERY)  # the grace in which pi-b would publish a round nobody settled

        # pi-b receives the next window's results but dies before it closes the round
        window, end = next_window_start()
        windows.append(window)
        peers["pi-b"].pause()
        for name in ("pi-b", "pi-c", "pi-d"):
            peers[name].publish_result(end)
        wait_for(
            lambda: all(window in peers[n].computed for n in ("pi-c", "pi-d")),
            5,
            "the others closing the round",
        )
        time.sleep(0.2)
        assert all(d["window"] != window for d in decisions(watch))  # pi-b is online
        peers["pi-b"].die()
        wait_for(lambda: any(d["window"] == window for d in decisions(watch)), 5,
                 "pi-c taking over")

        window, end = next_window_start()  # two left: pi-c leads
        windows.append(window)
        for name in ("pi-c", "pi-d"):
            peers[name].publish_result(end)
        wait_for(lambda: any(d["window"] == window for d in decisions(watch)), 5,
                 "a decision after the takeover")

        # a window with one result only: no decision, and the reason, once
        window, end = next_window_start()
        peers["pi-d"].publish_result(end)
        none_topic = f"{PREFIX}/decisions/{POLICY}/none"
        wait_for(lambda: len(watch.on(none_topic)) >= 1, 5, "the missed decision")
        time.sleep(EVERY + DEADLINE)  # a second report of the missed window would come by then
    finally:
        for name, p in peers.items():
            if name not in ("pi-a", "pi-b"):
                p.close()

    got = decisions(watch)
    per_window = Counter(d["window"] for d in got)
    assert sorted(per_window) == windows  # no window lost
    assert set(per_window.values()) == {1}  # never two decisions for one window
    leaders = [d["leader"] for d in sorted(got, key=lambda d: d["window"])]
    assert leaders == ["pi-a"] * 3 + ["pi-c"] * 2
    for d in got:
        expected = expected_decision(watch, d["window"])
        assert d["action"] == expected.action
        assert d["scores"] == pytest.approx(expected.scores, abs=1e-12)
        assert (
            d["value"] == pytest.approx(expected.value)
            if expected.value is not None
            else (d["value"] is None)
        )
        assert d["members"] == list(expected.members)
        assert (d["method"], d["quorum"], d["group"]) == ("mean", QUORUM, GROUP)
        for name in ("pi-c", "pi-d"):  # every member computed the same decision
            assert peers[name].computed[d["window"]].action == d["action"]
    missed = watch.on(none_topic)
    assert len(missed) == 1 and missed[0]["leader"] == "pi-c"
    assert missed[0]["reason"] == f"1 result(s) by the deadline, quorum is {QUORUM}"
    assert [len(p.published) for p in peers.values()] == [3, 0, 3, 0]
    acted = [d.window or 0 for p in peers.values() for d in p.acted]  # commands: one per window
    assert sorted(acted) == windows and len(set(acted)) == len(acted)
    assert [d.window for d in peers["pi-a"].acted] == windows[:3]
    assert [d.window for d in peers["pi-c"].acted] == windows[3:]
