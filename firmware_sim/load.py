"""A load generator: N simulated devices publishing readings at a fixed total rate."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


@dataclass(frozen=True, slots=True)
class LoadResult:
    sent: int
    seconds: float
    acknowledged: int

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def connect(host: str, port: int, client_id: str = "") -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    return client


def reading(seq: int, ts: float, device: int) -> bytes:
    return json.dumps(
        {"value": round(20.0 + (seq % 100) / 20 + device / 10, 3), "ts": ts, "seq": seq}
    ).encode()


def run_load(
    host: str,
    port: int,
    *,
    devices: int,
    rate: float,
    duration: float | None,
    count: int | None = None,
    prefix: str = "edge",
    qos: int = 1,
    progress: Callable[[int, float], None] | None = None,
) -> LoadResult:
    """Publish ``count`` readings (or for ``duration`` seconds) spread over ``devices``.

    ``rate`` is readings per second in total; 0 publishes as fast as possible.
    """
    client = connect(host, port)
    infos = []
    start = time.monotonic()
    last_report = start
    sent = 0
    try:
        while True:
            elapsed = time.monotonic() - start
            if (count is not None and sent >= count) or (
                duration is not None and elapsed >= duration
            ):
                break
            device = sent % devices
            seq = sent // devices
            topic = f"{prefix}/sensors/load-{device:04d}/temperature"
            infos.append(client.publish(topic, reading(seq, time.time(), device), qos=qos))
            sent += 1
            if rate > 0:
                ahead = sent / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
            if progress is not None and time.monotonic() - last_report >= 1.0:
                last_report = time.monotonic()
                progress(sent, last_report - start)
        for info in infos:
            info.wait_for_publish(30)
        seconds = time.monotonic() - start
        acknowledged = sum(1 for i in infos if i.is_published())
    finally:
        client.disconnect()
        client.loop_stop()
    return LoadResult(sent, seconds, acknowledged)
