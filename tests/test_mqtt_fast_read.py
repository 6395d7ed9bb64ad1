"""The client reads plain PUBLISH packets itself (``take_publishes``) and leaves every other
packet to paho: what the agent receives is what paho alone would have delivered.

The packets below are written from the MQTT 3.1.1 and 5 specifications (sections 2.2 and
3.3), not with the code under test."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.broker import Mosquitto
from agent.config import MqttSection
from agent.mqtt import Message
from agent.mqtt.client import MqttClient, Publish, take_publishes
from tests.conftest import Collector, wait_for


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish(topic: bytes | str, payload: bytes, qos: int = 1, mid: int = 7, *, v5: bool = True,
            props: bytes = b"", retain: bool = False, dup: bool = False) -> bytes:
    name = topic.encode() if isinstance(topic, str) else topic
    body = struct.pack("!H", len(name)) + name
    if qos:
        body += struct.pack("!H", mid)
    if v5:
        body += varint(len(props)) + props
    body += payload
    return bytes([0x30 | dup << 3 | qos << 1 | retain]) + varint(len(body)) + body


def test_plain_publishes_are_taken_whole_and_in_order() -> None:
    data = (publish("a/b", b"1") + publish("a/c", b"2", qos=0)
            + publish("c/é", b"x" * 200, mid=65535, retain=True, dup=True)
            + publish("d", b"y" * 20_000, mid=1))  # two- and three-byte remaining lengths
    taken, pos = take_publishes(data, 0, True, 100)
    assert taken == [Publish("a/b", b"1", 1, 7), Publish("a/c", b"2", 0, 0),
                     Publish("c/é", b"x" * 200, 1, 65535), Publish("d", b"y" * 20_000, 1, 1)]
    assert pos == len(data)
    v3 = publish("a/b", b"{}", v5=False) + publish("a/b", b"", qos=0, v5=False)
    assert take_publishes(v3, 0, False, 100) == (
        [Publish("a/b", b"{}", 1, 7), Publish("a/b", b"", 0, 0)], len(v3))


@pytest.mark.parametrize(
    "other",
    [
        publish("a/b", b"1", qos=2),  # QoS 2: paho keeps its state
        publish("a/b", b"1", props=b"\x02\x00\x00\x00\x3c"),  # message expiry
        publish("", b"1", props=b"\x23\x00\x01"),  # a topic alias
        publish(b"a/\xff", b"1"),  # not UTF-8
        publish("a/b", b"1", mid=0),  # packet id 0 is a protocol error
        b"\x36" + publish("a/b", b"1")[1:],  # QoS 3 does not exist
        b"\x40\x02\x00\x07",  # a PUBACK
        b"\x32\xff\xff\xff\xff\x01",  # a remaining length of five bytes
        b"\x32\x01\x00",  # shorter than its topic length
        b"\x32\x05\x00\x09a/b",  # a topic longer than the packet
        b"\x32\x07\x00\x03a/b\x00\x07",  # MQTT 5 without its property length
    ],
)
def test_anything_else_is_left_for_paho_from_where_it_starts(other: bytes) -> None:
    first = publish("a/b", b"first")
    data = first + other + publish("a/b", b"after")
    taken, pos = take_publishes(data, 0, True, 100)
    assert taken == [Publish("a/b", b"first", 1, 7)] and pos == len(first)
    assert take_publishes(data, pos, True, 100) == ([], pos)


def test_a_packet_not_wholly_read_waits_and_the_limit_holds() -> None:
    whole = publish("a/b", b"1") * 3
    cut = whole + publish("a/b", b"z" * 300)[:-1]
    assert take_publishes(cut, 0, True, 100) == ([Publish("a/b", b"1", 1, 7)] * 3, len(whole))
    header_only = whole + b"\x32\x80"  # a remaining length still coming
    assert take_publishes(header_only, 0, True, 100)[1] == len(whole)
    taken, pos = take_publishes(whole, 0, True, 2)
    assert len(taken) == 2 and pos == 2 * len(publish("a/b", b"1"))


@pytest.mark.broker
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_the_agent_receives_what_paho_alone_receives(
    broker: Mosquitto, collector_factory: Callable[..., Collector], protocol: str
) -> None:
    """Over a real Mosquitto: QoS 0, 1 and 2, properties, retained, a payload larger than one
    read ahead, unicode topics, interleaved; the client's messages equal a plain paho
    subscriber's, in order, and most came through the fast path."""
    got: list[Message] = []

    def on_message(msg: Message) -> None:
        got.append(msg)

    acked = [0]

    def on_drained() -> None:
        client.ack_all(got[acked[0]:])
        acked[0] = len(got)

    cfg = MqttSection(port=broker.port, protocol=protocol, subscriptions=["mix/#"])
    client = MqttClient(cfg, f"fast-{protocol}", will=None, on_message=on_message,
                        on_drained=on_drained)
    plain = collector_factory(broker.port, "mix/#")
    pub = collector_factory(broker.port)
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = ("unit", "C")
    sent: list[tuple[str, bytes, int]] = []
    client.start()
    try:
        assert client.wait_connected(10), client.last_error
        wait_for(lambda: plain.client.is_connected(), 10, "the plain subscriber")
        for i in range(600):
            topic = f"mix/dev-{i % 7}/température" if i % 5 else f"mix/dev-{i % 7}/t"
            qos = (1, 1, 1, 0, 2)[i % 5]
            payload = b"p" * 150_000 if i == 300 else f'{{"value": {i}}}'.encode()
            sent.append((topic, payload, qos))
            pub.client.publish(topic, payload, qos=qos,
                               properties=props if i % 11 == 0 and protocol == "5" else None)
        wait_for(lambda: len(got) == len(sent) and len(plain.messages) == len(sent), 30,
                 "every message at both subscribers")
        # we subscribe at QoS 1, so QoS 2 comes down as 1. Order holds within a QoS: a QoS 0
        # message may overtake QoS 1 ones waiting for room in our receive window, and
        # Mosquitto forwards a QoS 2 message once its publisher releases it
        expected = [(t, p, min(q, 1)) for t, p, q in sent]
        ours = [(m.topic, m.payload, m.qos) for m in got]
        assert sorted(ours) == sorted(expected)
        assert sorted((t, p) for t, p, _ in plain.messages) == sorted((t, p) for t, p, _ in sent)
        for qos in (0, 1):
            same = {p for _, p, q in sent if q == qos}
            assert [x for x in ours if x[1] in same] == [x for x in expected if x[1] in same]
            assert [(t, p) for t, p, _ in plain.messages if p in same] == [
                (t, p) for t, p, _ in sent if p in same]
        assert client.taken > len(sent) // 2  # the path under test did the reading
    finally:
        client.stop()



@pytest.mark.broker
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_without_manual_ack_taken_messages_are_acknowledged_as_paho_would(
    broker: Mosquitto, collector_factory: Callable[..., Collector], protocol: str
) -> None:
    """``manual_ack=False`` (the federation's vector exchange, status view, model push):
    paho acknowledges a QoS 1 message itself once delivered. A message read by the fast
    path must be acknowledged too, or the broker's window (Receive Maximum; Mosquitto's
    max_inflight_messages in 3.1.1) fills with messages it waits for us to acknowledge and
    nothing more comes; and the next connection of the session gets them all again."""
    got: list[Message] = []
    cfg = MqttSection(port=broker.port, protocol=protocol, subscriptions=["auto/#"],
                      receive_maximum=5)

    def connect() -> MqttClient:
        client = MqttClient(cfg, f"auto-ack-{protocol}", will=None, on_message=got.append,
                            manual_ack=False)
        client.start()
        assert client.wait_connected(10), client.last_error
        return client

    pub = collector_factory(broker.port)
    wait_for(lambda: pub.client.is_connected(), 10, "the publisher")
    client = connect()
    try:
        for i in range(300):
            pub.client.publish(f"auto/{i % 3}", f"{i}".encode(), qos=1)
        wait_for(lambda: len(got) >= 300, 20,
                 f"300 messages (got {len(got)}, {client.taken} by the fast path)")
        assert client.taken > 0  # the path under test did some of the reading
        assert [m.payload for m in got] == [f"{i}".encode() for i in range(300)]
    finally:
        client.stop()
    # the same session again: the broker resends what was never acknowledged (before the
    # SUBACK, so before the marker sent once the client is connected)
    got.clear()
    client = connect()
    try:
        pub.client.publish("auto/marker", b"marker", qos=1)
        wait_for(lambda: any(m.payload == b"marker" for m in got), 10, "the marker")
        assert [m.payload for m in got] == [b"marker"], f"{len(got) - 1} messages sent again"
    finally:
        client.stop()
