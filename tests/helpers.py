"""Helpers shared by several test files (fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import functools
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agent.inference.locate import ModelFile, locate
from agent.policy.signing import make_command

ROOT = Path(__file__).resolve().parent.parent
COMMAND_KEY = b"0123456789abcdef0123456789abcdef"  # the test actuators' firmware holds it


@functools.cache
def bundled() -> ModelFile:
    """The bundled model (SmolLM2-135M), located once per test session."""
    return locate("bundled:smollm2-135m")


def signed_command(key: bytes = COMMAND_KEY, **overrides: Any) -> dict[str, object]:
    """A SPEC 4 command for the living room's HVAC, signed with ``key``; any field overridden."""
    fields: dict[str, Any] = {
        "device": "livingroom-hvac",
        "actuator": "hvac",
        "action": "cool",
        "value": 22.0,
        "policy": "climate",
        "agent": "pi-livingroom",
        "reason": "temperature 26.1 C is above 20-24 C",
        "key": key,
        "now": time.time(),
        "ttl": 30.0,
    }
    fields.update(overrides)
    return make_command(**fields)


def db_rows(db: Path, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Rows of a query on an agent's SQLite file, read-only; [] while it does not exist yet."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def publish_paced(pub: Any, messages: Iterable[tuple[str, str]], every: int = 100,
                  pause: float = 0.02) -> list[Any]:
    """Publish (topic, payload) pairs at QoS 1 through ``pub`` (a Collector), pausing ``pause``
    seconds after every ``every`` of them; the paho message infos."""
    infos = []
    for i, (topic, payload) in enumerate(messages):
        infos.append(pub.publish(topic, payload))
        if i % every == every - 1:
            time.sleep(pause)
    return infos


class Clock:
    """A clock a test moves by hand: ``clock.now += 5``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Partition:
    """A real TCP hop between clients and the broker on loopback that can cut one direction.

    ``cut_upstream()`` makes every connection open now drop what its client sends from then
    on (the broker still sends to the client): a network partition in one direction, so what
    the client acknowledges after the cut never reaches the broker. New connections pass
    everything. ``lose`` names topics whose PUBLISH packets from the broker are lost on the
    way to the client (MQTT 5), as on a network that loses what the broker sent."""

    def __init__(self, upstream_port: int, lose: frozenset[str] = frozenset()) -> None:
        self.upstream_port = upstream_port
        self.lose = lose
        self.lost: list[bytes] = []  # payloads of the PUBLISH packets lost
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[dict[str, object]] = []
        self.dropped_bytes = 0
        self.downstream = bytearray()  # what the broker sent, if record is set
        self.record = False
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            conn: dict[str, object] = {"cut": False, "socks": (client, upstream)}
            with self._lock:
                self._open.append(conn)
            threading.Thread(target=self._pump, args=(client, upstream, conn), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()

    def _forward(self, data: bytes, dst: socket.socket, conn: dict[str, object] | None) -> None:
        if conn is not None and conn["cut"]:
            with self._lock:
                self.dropped_bytes += len(data)
            return
        if conn is None and self.record:
            with self._lock:
                self.downstream += data
        dst.sendall(data)

    def _pump(self, src: socket.socket, dst: socket.socket, conn: dict[str, object] | None) -> None:
        try:
            pending = bytearray()
            while data := src.recv(65536):
                if conn is None and self.lose:
                    pending += data
                    data = self._keep(pending)
                self._forward(data, dst, conn)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _keep(self, pending: bytearray) -> bytes:
        """The whole packets at the head of ``pending`` (taken off it), less the lost ones."""
        out, i = bytearray(), 0
        while i + 1 < len(pending):
            length, start = _varint(pending, i + 1)
            if start > len(pending) or pending[start - 1] & 0x80 or start + length > len(pending):
                break  # not all here yet
            packet = bytes(pending[i : start + length])
            i = start + length
            published = mqtt5_publishes(packet)
            if published and published[0][1] in self.lose:
                self.lost.append(published[0][2])
                continue
            out += packet
        del pending[:i]
        return bytes(out)

    def cut_upstream(self) -> None:
        with self._lock:
            for conn in self._open:
                conn["cut"] = True

    def drop(self) -> None:
        """End every open connection, as a network failure would; new ones still pass."""
        with self._lock:
            conns, self._open = self._open, []
        for conn in conns:
            for s in conn["socks"]:  # type: ignore[attr-defined]
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed = True
        self.server.close()
        with self._lock:
            for conn in self._open:
                for s in conn["socks"]:  # type: ignore[attr-defined]
                    s.close()


def mqtt5_publishes(stream: bytes) -> list[tuple[int, str, bytes]]:
    """(fixed header flags, topic, payload) of every PUBLISH in a recorded MQTT 5 byte stream
    (from the broker to a client)."""
    out, i = [], 0
    while i < len(stream):
        first, (length, i) = stream[i], _varint(stream, i + 1)
        body, i = stream[i : i + length], i + length
        if first >> 4 != 3 or len(body) < length:
            continue
        topic_len = int.from_bytes(body[:2], "big")
        topic = body[2 : 2 + topic_len].decode()
        j = 2 + topic_len + (2 if first & 0x06 else 0)  # the packet id, with QoS > 0
        props, j = _varint(body, j)
        out.append((first & 0x0F, topic, bytes(body[j + props :])))
    return out


def _varint(data: bytes | bytearray, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while i < len(data):
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return value, i
