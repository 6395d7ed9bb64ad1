"""Four peers on a real Mosquitto: group decisions match the math, exactly one member (the
lowest id) publishes each, and when it dies (its last will says offline) the next lowest
takes over without losing a window or publishing one twice."""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.broker import Mosquitto
from agent.peers.aggregate import GroupDecision, Outcome, aggregate, parse_outcome, parse_result
from agent.peers.group import GroupTracker, window_of
from agent.peers.membership import Membership
from tests.conftest import Collector, wait_for

pytestmark = pytest.mark.broker

PREFIX = "edge"
GROUP = "livingroom"
POLICY = "climate"
ACTIONS = ["cool", "heat", "off"]
EVERY = 0.5
DEADLINE = 0.3
QUORUM = 2


def scores_for(agent: str, window: int) -> tuple[str, dict[str, float], float | None]:
    rng = random.Random(f"{agent}/{window}")
    raw = [rng.random() ** 2 for _ in ACTIONS]
    scores = {a: v / math.fsum(raw) for a, v in zip(ACTIONS, raw, strict=True)}
    action = max(scores, key=lambda a: scores[a])
    return action, scores, round(rng.uniform(18, 26), 1) if action != "off" else None


class Peer:
    """An agent's peer layer, as the agent will wire it: membership from statuses, a group
    tracker fed with results and seen decisions, a ticker publishing what it must."""

    def __init__(self, port: int, agent: str) -> None:
        self.agent = agent
        self.started = time.time()
        self.lock = threading.Lock()
        self.membership = Membership(PREFIX, time.time)
        self.tracker = GroupTracker(
            agent,
            GROUP,
            POLICY,
            ACTIONS,
            every=EVERY,
            deadline=DEADLINE,
            method="mean",
            quorum=QUORUM,
            grace=5.0,
        )
        self.computed: dict[int, Outcome] = {}
        self.published: list[tuple[float, Outcome]] = []
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

    def _status(self, state: str) -> bytes:
        return json.dumps(
            {
                "state": state,
                "ts": time.time(),
                "groups": [GROUP],
                "uptime_s": time.time() - self.started,
            }
        ).encode()

    def _on_connect(self, client: paho.Client, *args: Any) -> None:
        client.subscribe(
            [
                (f"{PREFIX}/agents/+/status", 1),
                (f"{PREFIX}/agents/+/results/{POLICY}", 1),
                (f"{PREFIX}/decisions/{POLICY}", 1),
                (f"{PREFIX}/decisions/{POLICY}/none", 1),
            ]
        )
        client.publish(self.status_topic, self._status("online"), qos=1, retain=True)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        payload = bytes(msg.payload)
        with self.lock:
            now = time.time()
            if msg.topic.endswith("/status"):
                self.membership.update(msg.topic, payload)
            elif "/results/" in msg.topic:
                reason = self.tracker.offer(parse_result(payload), now, self.membership)
                assert reason is None, reason
            elif payload:
                self.tracker.seen(parse_outcome(payload), now, self.membership)

    def _tick_loop(self) -> None:
        while self.running:
            with self.lock:
                if not self.paused:
                    self._tick()
            time.sleep(0.02)

    def _tick(self) -> None:
        for outcome in self.tracker.tick(time.time(), self.membership):
            suffix = "" if isinstance(outcome, GroupDecision) else "/none"
            self.client.publish(
                f"{PREFIX}/decisions/{POLICY}{suffix}",
                outcome.to_payload(),
                qos=1,
                retain=not suffix,
            )
            self.published.append((time.time(), outcome))
        for window, round_ in self.tracker.rounds.items():
            if round_.outcome is not None:
                self.computed[window] = round_.outcome

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
        with self.lock:
            self.paused = True

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
    broker: Mosquitto, collector_factory: Callable[..., Collector]
) -> None:
    watch = collector_factory(
        broker.port, f"{PREFIX}/decisions/#", f"{PREFIX}/agents/+/results/{POLICY}"
    )
    peers = {name: Peer(broker.port, name) for name in ("pi-a", "pi-b", "pi-c", "pi-d")}
    try:
        for p in peers.values():
            wait_for(lambda p=p: len(p.membership.members(GROUP)) == 4, 10, "membership")  # type: ignore[misc]
        windows = []
        for _ in range(4):  # all four alive: pi-a leads
            window, end = next_window_start()
            windows.append(window)
            for p in peers.values():
                p.publish_result(end)
        wait_for(lambda: len(decisions(watch)) >= 4, 10, "the first four decisions")

        # pi-a receives the next window's results but dies before it closes the round
        window, end = next_window_start()
        windows.append(window)
        peers["pi-a"].pause()
        for p in peers.values():
            p.publish_result(end)
        wait_for(
            lambda: all(window in peers[n].computed for n in ("pi-b", "pi-c", "pi-d")),
            5,
            "the others closing the round",
        )
        time.sleep(0.2)
        assert len(decisions(watch)) == 4  # pi-b does not publish while pi-a is online
        killed = time.time()
        peers["pi-a"].die()
        wait_for(lambda: len(decisions(watch)) >= 5, 5, "pi-b taking over")
        takeover = peers["pi-b"].published[0][0] - killed

        for _ in range(3):  # three left: pi-b leads
            window, end = next_window_start()
            windows.append(window)
            for name in ("pi-b", "pi-c", "pi-d"):
                peers[name].publish_result(end)
        wait_for(lambda: len(decisions(watch)) >= 8, 10, "decisions after the takeover")

        # a window with one result only: no decision, and the reason, once
        window, end = next_window_start()
        peers["pi-d"].publish_result(end)
        none_topic = f"{PREFIX}/decisions/{POLICY}/none"
        wait_for(lambda: len(watch.on(none_topic)) >= 1, 5, "the missed decision")
        time.sleep(3 * EVERY)
    finally:
        for name, p in peers.items():
            if name != "pi-a":
                p.close()

    got = decisions(watch)
    per_window = Counter(d["window"] for d in got)
    assert sorted(per_window) == windows  # no window lost
    assert set(per_window.values()) == {1}  # never two decisions for one window
    leaders = [d["leader"] for d in sorted(got, key=lambda d: d["window"])]
    assert leaders == ["pi-a"] * 4 + ["pi-b"] * 4
    assert takeover < DEADLINE + 1.0  # the will is immediate on a dropped connection
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
        for name in ("pi-b", "pi-c", "pi-d"):  # every member computed the same decision
            assert peers[name].computed[d["window"]].action == d["action"]
    missed = watch.on(none_topic)
    assert len(missed) == 1 and missed[0]["leader"] == "pi-b"
    assert missed[0]["reason"] == f"1 result(s) by the deadline, quorum is {QUORUM}"
    assert [len(p.published) for p in peers.values()] == [4, 5, 0, 0]
