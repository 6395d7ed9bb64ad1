"""A message is acknowledged only on the connection it arrived on.

After a reconnect the broker sends what was not acknowledged again, under packet ids it may
give to other messages too; an acknowledgement of the old delivery sent on the new connection
would settle whatever the broker holds under that id now. The agent's client drops it, so the
broker keeps the message and sends it again."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.broker import Mosquitto
from agent.config import MqttSection, ReconnectSection
from agent.mqtt import Message
from agent.mqtt.client import MqttClient
from tests.conftest import Collector, wait_for
from tests.helpers import Partition

pytestmark = pytest.mark.broker

TOPIC = "edge/sensors/dev-1/temperature"


def test_an_ack_of_an_earlier_connection_is_not_sent(
    tmp_path: Path, broker: Mosquitto, collector_factory: Callable[..., Collector]
) -> None:
    hop = Partition(broker.port)
    got: list[Message] = []
    cfg = MqttSection(port=hop.port, subscriptions=[TOPIC],
                      reconnect=ReconnectSection(min_delay="1s", max_delay="1s"))
    clients: list[MqttClient] = []

    def connect(into: list[Message]) -> MqttClient:  # the same client id: the same session
        clients.append(MqttClient(cfg, "stale-ack", will=None, on_message=into.append))
        clients[-1].start()
        assert clients[-1].wait_connected(10), clients[-1].last_error
        return clients[-1]

    try:
        client = connect(got)
        pub = collector_factory(broker.port)
        tries = iter(range(1000))

        def arrived() -> bool:  # publish until the client's subscription is in place
            pub.publish(TOPIC, json.dumps({"value": 21.0, "seq": next(tries)}))
            return bool(got)

        wait_for(arrived, 10, "the first delivery")
        first = got[0]
        seen = len(got)
        hop.drop()  # the connection fails before the message was acknowledged
        wait_for(lambda: any(m.payload == first.payload for m in got[seen:]), 15,
                 "the message sent again after the reconnect")
        second = next(m for m in got[seen:] if m.payload == first.payload)
        assert second.generation != first.generation
        client.ack(first)  # late: the ingest thread committed it after the connection fell
        client.stop()  # sends what is queued, then disconnects cleanly

        later: list[Message] = []
        client = connect(later)  # not acknowledged on any connection: the broker sends it again
        wait_for(lambda: any(m.payload == first.payload for m in later), 10,
                 "the message sent again on the next session")
        client.ack(next(m for m in later if m.payload == first.payload))  # on its own connection
        client.stop()

        again: list[Message] = []
        connect(again)
        pub.publish(TOPIC, json.dumps({"value": 22.0, "seq": "last"})).wait_for_publish(5)
        wait_for(lambda: any(b'"last"' in m.payload for m in again), 10, "the next reading")
        assert all(m.payload != first.payload for m in again)  # acknowledged: not sent again
    finally:
        for c in clients:
            c.stop()
        hop.close()
