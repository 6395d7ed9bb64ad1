"""One thread owns the socket: messages, the drain (where ingest commits and acknowledges) and
tasks woken from other threads all run on the client's network thread, and what other threads
publish is still sent."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable

import pytest

from agent.broker import Mosquitto
from agent.config import MqttSection
from agent.mqtt import Message
from agent.mqtt.client import MqttClient, ReadAhead
from tests.conftest import Collector, wait_for

TOPIC = "edge/sensors/dev-1/temperature"


def test_read_ahead_serves_small_reads_from_one_large_one() -> None:
    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        sock = ReadAhead(a)
        b.sendall(b"\x30\x05hello\x30\x02hi")
        assert sock.recv(1) == b"\x30"
        assert sock.pending() == 10
        assert sock.recv(1) == b"\x05"
        assert sock.recv(5) == b"hello"
        assert sock.recv(1) == b"\x30"
        assert sock.recv(10) == b"\x02hi"  # short, as a socket's recv may be
        assert sock.buffered() == 0
        with pytest.raises(BlockingIOError):
            sock.recv(1)
        assert sock.fileno() == a.fileno()
        b.close()
        assert sock.recv(1) == b""  # the peer closed
    finally:
        a.close()
        b.close()


@pytest.mark.broker
def test_messages_drains_and_woken_work_run_on_the_network_thread(
    broker: Mosquitto, collector_factory: Callable[..., Collector]
) -> None:
    threads: set[str] = set()
    got: list[Message] = []
    drains: list[int] = []  # messages received when each drain ran
    client: MqttClient

    def on_message(msg: Message) -> None:
        threads.add(threading.current_thread().name)
        got.append(msg)

    def on_drained() -> None:
        threads.add(threading.current_thread().name)
        drains.append(len(got))
        client.ack_all(got[drains[-2] if len(drains) > 1 else 0:])

    cfg = MqttSection(port=broker.port, subscriptions=[TOPIC])
    client = MqttClient(cfg, "one-thread", will=None, on_message=on_message,
                        on_drained=on_drained, drain_after=50, thread_name="net-test")
    listener = collector_factory(broker.port, "edge/agents/#")
    pub = collector_factory(broker.port)
    client.start()
    try:
        assert client.wait_connected(10), client.last_error
        tries = iter(range(1000))
        wait_for(lambda: bool(pub.publish(TOPIC, json.dumps({"value": 1, "seq": next(tries)}))
                              and got), 10, "the subscription")
        for i in range(300):
            pub.publish(TOPIC, json.dumps({"value": 21.0, "seq": 10_000 + i}))
        wait_for(lambda: sum(b'"seq": 1' in m.payload for m in got) >= 300, 20, "300 messages")
        wait_for(lambda: bool(drains) and drains[-1] == len(got), 10, "the last drain")
        assert all(b - a <= 50 for a, b in zip([0, *drains], drains, strict=False))

        before = len(drains)
        client.wake()  # from this thread: the drain runs on the network thread
        wait_for(lambda: len(drains) > before, 10, "a drain after wake()")

        client.publish("edge/agents/one-thread/status", b"online", qos=1)  # from this thread
        wait_for(lambda: bool(listener.messages), 10, "a message published from another thread")
        assert threads == {"net-test"}
    finally:
        client.stop()


@pytest.mark.broker
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_connected_means_subscribed_a_message_sent_at_once_is_not_lost(
    broker: Mosquitto, collector_factory: Callable[..., Collector], protocol: str
) -> None:
    """A new session has no subscription until the broker has our SUBSCRIBE. The agent says it
    is online from ``on_connect`` (and systemd hears READY after ``wait_connected``): a message
    published right then, and acknowledged by the broker, must reach us. The publish below runs
    inside the callback, so the network thread is held there: before the fix the SUBSCRIBE had
    not even been written yet."""
    got: list[Message] = []
    pub = collector_factory(broker.port)

    def on_connect() -> None:
        info = pub.publish(TOPIC, b'{"value": 20.5}', qos=1)
        info.wait_for_publish(5)
        assert info.is_published()

    cfg = MqttSection(port=broker.port, protocol=protocol, subscriptions=[TOPIC])
    client = MqttClient(cfg, f"new-session-{protocol}", will=None, on_message=got.append,
                        on_connect=on_connect, manual_ack=False)
    client.start()
    try:
        assert client.wait_connected(10), client.last_error
        wait_for(lambda: bool(got), 10, "the message published as the client came online")
        assert got[0].payload == b'{"value": 20.5}'
    finally:
        client.stop()
