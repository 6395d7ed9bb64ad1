"""The only importer of paho: connect, subscribe, acknowledge, publish, last will.

One thread of ours owns the socket: it drives paho's loop (``Client.loop``: read, write,
keepalive), reconnects with backoff as ``loop_forever`` would, and hands each message to
``on_message`` as it is read. Once the socket has nothing more to read (or ``drain_after``
messages came in a row) it calls ``on_drained`` on the same thread: the agent's ingest parses,
commits and acknowledges the batch there, so a reading crosses no thread between the socket
and the database. Plain QoS 0/1 publishes already read ahead are taken straight from the
read buffer (:func:`take_publishes`, ~1 µs each instead of paho's ~20 µs); paho reads every
other packet, and every packet it would reject. Other threads publish as with paho's own
thread: the packet is queued and the loop woken (:meth:`MqttClient.wake` wakes it for other
work). QoS 1 messages are acknowledged by :meth:`MqttClient.ack` once the caller has committed
them; an acknowledgement for a message received on an earlier connection is dropped, because
the broker redelivers it and its packet id may since have been reused.

With MQTT 5 the client announces on CONNECT how much it takes: Receive Maximum (how many
QoS 1 messages may wait for our acknowledgement) and Maximum Packet Size (the broker drops,
rather than sends, anything larger). MQTT 3.1.1 has neither: there the broker's own
``max_inflight_messages`` and ``message_size_limit`` are the bounds.

Mosquitto 2.0 counts a QoS 1 message it drops as too large against the Receive Maximum and
never gives the slot back: ``receive_maximum`` such messages stop all QoS 1 delivery to us
until we reconnect. :meth:`MqttClient.probe` finds that out: it sends itself a QoS 1 message
now and then, and if one does not come back while fewer than ``receive_maximum`` messages
wait for our acknowledgement, the broker is stuck and the client reconnects (which resets the
window). It judges only once a probe has come back at all, so a broker that does not let the
probe through (an ACL) never makes it reconnect.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import paho.mqtt.client as paho
from paho.mqtt.client import PUBACK
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.config import MqttSection
from agent.errors import BrokerError

log = logging.getLogger(__name__)

_PUBACK = struct.Struct("!BBH")
REDELIVER_DELAY = 0.05  # seconds before the reconnect that asks the broker to send again
IDLE_WAIT = 1.0  # seconds the loop waits on a quiet socket (a publish or wake() ends it early)
READ_AHEAD = 65536  # bytes asked of the socket at once
PACKET_OVERHEAD = 4096  # fixed header, topic and properties around the largest payload taken


def packet_limit(cfg: MqttSection, largest_payload: int = 0) -> int:
    """The Maximum Packet Size to announce: ``mqtt.max_packet_bytes`` if set, else room for
    the largest payload this client takes (at least ``mqtt.max_payload_bytes``)."""
    if cfg.max_packet_bytes is not None:
        return cfg.max_packet_bytes
    return max(cfg.max_payload_bytes, largest_payload) + PACKET_OVERHEAD


class Message(NamedTuple):  # built on paho's network thread for every message: keep it cheap
    topic: str
    payload: bytes
    qos: int
    mid: int
    recv_ts: float
    generation: int  # which connection it arrived on


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def credentials(client: paho.Client, cfg: MqttSection) -> None:
    """The configured user, password and TLS files on a paho client (OSError, ssl.SSLError or
    ValueError when the TLS files cannot be loaded)."""
    if cfg.username is not None:
        client.username_pw_set(cfg.username, cfg.password())
    if cfg.tls.enabled:
        client.tls_set(
            ca_certs=None if cfg.tls.ca_file is None else str(cfg.tls.ca_file),
            certfile=None if cfg.tls.cert_file is None else str(cfg.tls.cert_file),
            keyfile=None if cfg.tls.key_file is None else str(cfg.tls.key_file),
            cert_reqs=ssl.CERT_REQUIRED,
        )


class ReadAhead:
    """A socket whose ``recv`` is served from one large read. paho reads a packet in three
    calls or more (its first byte, its length, the rest), each a system call, and selects
    before each packet; from this buffer a packet costs none, and ``pending`` (which paho asks
    of TLS sockets) tells the loop that more is in hand."""

    __slots__ = ("_buf", "_pos", "sock")

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        pos = self._pos
        if pos >= len(self._buf):
            data: bytes = self.sock.recv(max(size, READ_AHEAD))
            if len(data) <= size:
                self._buf, self._pos = b"", 0
                return data
            self._buf, pos = data, 0
        out = self._buf[pos : pos + size]  # short when less is in hand, as recv may be
        self._pos = pos + len(out)
        return out

    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def window(self) -> tuple[bytes, int]:
        """The bytes read ahead and the position of the first not yet taken."""
        return self._buf, self._pos

    def skip_to(self, pos: int) -> None:
        """Mark everything before ``pos`` of :meth:`window` as taken."""
        self._pos = pos

    def pending(self) -> int:
        inner = getattr(self.sock, "pending", None)
        return self.buffered() + (inner() if inner is not None else 0)

    def __getattr__(self, name: str) -> Any:  # send, fileno, close, setblocking...
        return getattr(self.sock, name)


class Publish(NamedTuple):
    topic: str
    payload: bytes
    qos: int
    mid: int


def take_publishes(buf: bytes, pos: int, v5: bool, limit: int) -> tuple[list[Publish], int]:
    """The PUBLISH packets at ``buf[pos:]`` that need nothing of paho, up to ``limit``, and the
    position after the last one taken.

    paho spends ~20 µs of Python on each message it reads (a packet-state dict, struct
    unpacks, an MQTTMessage, MQTT 5 properties, callback matching under a mutex); this takes a
    whole QoS 0 or 1 PUBLISH with a UTF-8 topic and, in MQTT 5, no properties in under 1 µs.
    It stops at the first packet that is anything else (another type, QoS 2, properties, an
    empty or undecodable topic, packet id 0, a malformed length, or one not wholly read yet):
    paho reads that one as before, with its own checks and errors."""
    taken: list[Publish] = []
    end_of_data = len(buf)
    while len(taken) < limit and pos < end_of_data:
        header = buf[pos]
        qos = (header >> 1) & 3
        if header & 0xF0 != 0x30 or qos > 1:
            break
        at, length, shift = pos + 1, 0, 0
        while True:  # remaining length: 1 to 4 bytes
            if at >= end_of_data or shift > 21:
                return taken, pos
            byte = buf[at]
            at += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        end = at + length
        if end > end_of_data or length < 2:
            break
        topic_end = at + 2 + ((buf[at] << 8) | buf[at + 1])
        start, mid = topic_end, 0
        if qos:
            if start + 2 > end:
                break
            mid = (buf[start] << 8) | buf[start + 1]
            start += 2
        if v5:
            if start >= end or buf[start] != 0:  # properties: paho's business
                break
            start += 1
        if topic_end == at + 2 or start > end or (qos and mid == 0):
            break
        try:
            topic = buf[at + 2 : topic_end].decode("utf-8")
        except UnicodeDecodeError:
            break
        taken.append(Publish(topic, buf[start:end], qos, mid))
        pos = end
    return taken, pos


def raw_socket(sock: object) -> object:
    return sock.sock if isinstance(sock, ReadAhead) else sock


def no_delay(sock: object) -> None:
    """Send each packet at once: without TCP_NODELAY a command (or an acknowledgement) written
    just after another packet waits for the broker's delayed ACK, up to 40 ms on Linux."""
    sock = raw_socket(sock)
    if isinstance(sock, socket.socket):  # plain or TLS; not a websocket wrapper
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class MqttClient:
    """A paho client in a persistent session with manual acknowledgement."""

    def __init__(
        self,
        cfg: MqttSection,
        client_id: str,
        *,
        will: Will | None,
        on_message: Callable[[Message], None],
        on_connect: Callable[[], None] | None = None,
        manual_ack: bool = True,
        extra_filters: Sequence[str] = (),
        max_packet: int | None = None,
        probe_topic: str | None = None,
        on_drained: Callable[[], None] | None = None,
        drain_after: int = 500,
        thread_name: str | None = None,
    ) -> None:
        """``on_drained`` runs on the network thread once the socket has nothing more to read,
        or after ``drain_after`` messages in a row, and whenever :meth:`wake` is called."""
        self.cfg = cfg
        self.max_packet = max_packet  # None: no limit announced
        self.probe_topic = probe_topic
        self._manual_ack = manual_ack
        self._probe: tuple[bytes, float] | None = None  # (payload, sent at) awaiting its echo
        self._probe_armed = False  # a probe came back once: the broker lets probes through
        self._probe_count = 0
        self._unacked = 0  # QoS 1 messages of this connection not acknowledged yet
        self._count = threading.Lock()
        self.stalls = 0
        self.taken = 0  # messages read by take_publishes rather than paho
        self.filters = [*cfg.topic_filters, *extra_filters, *([probe_topic] if probe_topic else [])]
        self._on_message = on_message
        self._on_connect_cb = on_connect
        self._on_drained = on_drained
        self._drain_after = max(1, drain_after)
        self._read = 0  # messages read since on_drained last ran
        self._woken = threading.Event()
        self._write = threading.Lock()  # held by the network thread while in paho's loop
        self._stop_loop = False
        self._delay: float | None = None  # the current reconnect delay; None once connected
        self._v5 = cfg.protocol == "5"
        self._generation = 0
        self._connected = threading.Event()  # set once the subscriptions are acknowledged
        self._subscribing: int | None = None  # the mid of the SUBSCRIBE awaiting its SUBACK
        self._closing = False
        self.last_error: str | None = None
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5 if self._v5 else paho.MQTTv311,
            clean_session=None if self._v5 else False,
            manual_ack=manual_ack,
        )
        client.max_inflight_messages_set(max(20, cfg.receive_maximum))
        client.max_queued_messages_set(0)
        self._min_delay = max(1, int(cfg.reconnect.min_delay))
        self._max_delay = max(1, int(cfg.reconnect.max_delay))
        self._redelivering = False
        try:
            credentials(client, cfg)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise BrokerError(f"cannot load TLS files: {exc}") from None
        if will is not None:
            client.will_set(will.topic, will.payload, will.qos, will.retain)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_subscribe = self._handle_subscribe
        create = client._create_socket
        client._create_socket = lambda: ReadAhead(create())  # type: ignore[method-assign]
        self._client = client
        self._thread = threading.Thread(
            target=self._run, name=thread_name or f"mqtt-{client_id}", daemon=True
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; the network thread keeps reconnecting with backoff."""
        props = None
        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = int(self.cfg.session_expiry)
            props.ReceiveMaximum = self.cfg.receive_maximum
            if self.max_packet is not None:
                props.MaximumPacketSize = self.max_packet
        try:
            self._client.connect_async(
                self.cfg.host,
                self.cfg.port,
                keepalive=max(5, int(self.cfg.keepalive)),
                clean_start=False if self._v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
                properties=props,
            )
        except (OSError, ValueError) as exc:
            raise BrokerError(f"cannot connect to {self.cfg.host}:{self.cfg.port}: {exc}") from None
        # what loop_start() does: with a thread set, paho only queues a packet published from
        # another thread (and wakes the loop) instead of writing to the socket there
        self._client._thread = self._thread
        self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def stop(self, timeout: float = 5.0) -> None:
        """Flush what is queued for sending, then disconnect cleanly (no last will)."""
        self._closing = True
        deadline = time.monotonic() + timeout
        running = self._thread.is_alive()
        while running and self._client.want_write() and time.monotonic() < deadline:
            time.sleep(0.01)
        self._stop_loop = True
        self._client.disconnect()
        self._woken.set()
        if running and threading.current_thread() is not self._thread:
            self._thread.join(max(0.5, deadline - time.monotonic()))

    def wake(self) -> None:
        """Have the network thread run ``on_drained`` soon (callable from any thread)."""
        self._woken.set()
        wake = self._client._sockpairW  # paho's own: a byte there ends the loop's select()
        if wake is not None:
            with contextlib.suppress(OSError):
                wake.send(b"\0")

    # -- the network thread ------------------------------------------------------------------

    def _run(self) -> None:
        """``loop_forever`` with ``on_drained`` between reads and a backoff that still runs
        it (the ingest keeps committing and its tasks keep running while the broker is away)."""
        self._drained()  # from here on, on_drained knows which thread it runs on
        try:
            while not self._stop_loop:
                if self._open():
                    self._serve()
                if not self._stop_loop:
                    self._wait_backoff()
        finally:
            self._drained()

    def _open(self) -> bool:
        try:
            with self._write:  # no other thread writes to a socket that has not sent CONNECT
                self._client.reconnect()
        except OSError:
            self.last_error = f"cannot reach broker at {self.cfg.host}:{self.cfg.port}"
            log.warning("%s; retrying", self.last_error)
            return False
        return True

    def _serve(self) -> None:
        """Read, write and keep alive until the connection ends."""
        client, ok = self._client, MQTTErrorCode.MQTT_ERR_SUCCESS
        loop, read, drain_after = client.loop, client.loop_read, self._drain_after
        timeout = 0.0
        while True:
            before = self._read
            with self._write:
                rc = loop(timeout)
                sock = client.socket()
                # what is already read ahead needs no select() per packet
                while rc == ok and isinstance(sock, ReadAhead) and sock.buffered() and (
                    self._read < drain_after
                ):
                    if not self._take(sock):
                        rc = read()
            if rc != ok:
                self._drained()
                return
            if self._read != before and self._read < drain_after:
                timeout = 0.0  # messages are coming: read on before handing the batch over
                continue
            self._drained()
            timeout = IDLE_WAIT

    def _take(self, sock: ReadAhead) -> bool:
        """Deliver the plain publishes read ahead without paho (:func:`take_publishes`);
        False if there were none (then paho reads the next packet)."""
        client = self._client
        if client._in_packet["command"]:  # paho is in the middle of a packet
            return False
        buf, pos = sock.window()
        taken, pos = take_publishes(buf, pos, self._v5, self._drain_after - self._read)
        if not taken:
            return False
        sock.skip_to(pos)
        self.taken += len(taken)
        with client._msgtime_mutex:  # as paho after each packet (its keepalive counts on it)
            client._last_bytes_received = paho.time_func()
        now = time.time()
        for p in taken:
            self._deliver(p.topic, p.payload, p.qos, p.mid, now)
        if not self._manual_ack:  # what paho does for the messages it reads: acknowledge each
            self._queue_pubacks([p.mid for p in taken if p.qos == 1])  # once delivered
        return True

    def _drained(self) -> None:
        self._read = 0
        self._woken.clear()
        if self._on_drained is not None:
            self._on_drained()

    def _wait_backoff(self) -> None:
        """Wait before the next attempt: ``reconnect.min_delay`` (REDELIVER_DELAY when asked to
        redeliver), doubling up to ``reconnect.max_delay``; reset once connected."""
        low = REDELIVER_DELAY if self._redelivering else self._min_delay
        self._delay = low if self._delay is None else min(2 * self._delay, self._max_delay)
        deadline = time.monotonic() + self._delay
        while not self._stop_loop:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._woken.wait(min(left, IDLE_WAIT))
            self._drained()

    # -- traffic -----------------------------------------------------------------------------

    def ack(self, msg: Message) -> None:
        if msg.qos > 0 and msg.generation == self._generation:
            with self._count:
                self._unacked -= 1
            self._client.ack(msg.mid, msg.qos)

    def ack_all(self, msgs: Sequence[Message]) -> None:
        """Acknowledge a committed batch in one write: the PUBACKs of this connection's QoS 1
        messages go out as one buffer (one wake-up of the network thread, one send) instead
        of one packet, one wake-up and one send each."""
        generation = self._generation
        mids = [m.mid for m in msgs if m.qos == 1 and m.generation == generation]
        if not mids or not self._manual_ack:
            return
        with self._count:
            self._unacked -= len(mids)
        self._queue_pubacks(mids)

    def _queue_pubacks(self, mids: Sequence[int]) -> None:
        """PUBACKs for ``mids``, queued as one buffer (one send). A PUBACK with reason
        "success" and no properties is the same 4 bytes in MQTT 3.1.1 and 5 (what paho's own
        ack() sends); paho writes a queued buffer as it is."""
        if mids:
            packet = b"".join([_PUBACK.pack(0x40, 2, mid) for mid in mids])
            self._client._packet_queue(PUBACK, packet, 0, 0)

    def probe(self, timeout: float) -> bool:
        """Send a probe, or judge the last one: False if it did not come back within
        ``timeout`` seconds although our window had room (then the client reconnects)."""
        if self.probe_topic is None or not self.connected:
            return True
        now = time.monotonic()
        pending = self._probe
        if pending is not None and now - pending[1] < timeout:
            return True
        if pending is not None and self._probe_armed and self._unacked < self.cfg.receive_maximum:
            self.stalls += 1
            log.warning(
                "no QoS 1 message reached us for %.0fs although %d of %d slots were free: the "
                "broker's window is stuck (Mosquitto 2.0 and messages over our Maximum Packet "
                "Size?); reconnecting",
                now - pending[1],
                self.cfg.receive_maximum - self._unacked,
                self.cfg.receive_maximum,
            )
            self._probe = None
            self._drop_connection()
            return False
        self._probe_count += 1
        payload = str(self._probe_count).encode()
        self._probe = (payload, now)
        self._client.publish(self.probe_topic, payload, qos=1)
        return True

    def redeliver(self) -> None:
        """Reconnect so the broker sends again what we received but did not acknowledge.

        At once, not after ``reconnect.min_delay`` (a second at least): the broker is up and
        has a backlog for us. The backoff still doubles from there if it is not, and the
        configured delays are back once connected."""
        if self._client.is_connected():  # from the CONNACK on: the SUBACK may still be coming
            self._redelivering = True
            self._drop_connection()

    def _drop_connection(self) -> None:
        """End the connection as if the network had: paho reconnects, the session stays."""
        sock = raw_socket(self._client.socket())
        if isinstance(sock, socket.socket):  # plain or TLS (ssl.SSLSocket is one too)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def publish(
        self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False
    ) -> paho.MQTTMessageInfo:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        self._send_now()
        return info

    def _send_now(self) -> None:
        """From another thread while the network thread drains (a commit, a task): write what
        is queued now rather than after the drain, so a command never waits for a commit.
        While the network thread is in paho's loop it holds the lock, and the byte paho wrote
        to its socketpair wakes it to write instead. An error is left for that loop to meet
        (paho puts the packet back)."""
        if threading.current_thread() is self._thread or not self._write.acquire(blocking=False):
            return
        try:
            if self._client.want_write():
                self._client._packet_write()
        finally:
            self._write.release()

    def publish_wait(
        self,
        topic: str,
        payload: bytes | str,
        qos: int = 1,
        retain: bool = False,
        timeout: float = 5.0,
    ) -> bool:
        """Publish and wait for the broker's acknowledgement; False on timeout."""
        info = self.publish(topic, payload, qos, retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        try:
            info.wait_for_publish(timeout)
        except RuntimeError:
            return False
        return info.is_published()

    # -- paho callbacks (on the network thread) ----------------------------------------------

    def _handle_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {reason}"
            log.error("%s (%s:%d)", self.last_error, self.cfg.host, self.cfg.port)
            return
        self._generation += 1
        with self._count:
            self._unacked = 0
        self._probe = None
        no_delay(client.socket())
        self._redelivering = False
        self._delay = None
        log.info(
            "connected to %s:%d (MQTT %s, session %s)",
            self.cfg.host,
            self.cfg.port,
            self.cfg.protocol,
            "resumed" if flags.session_present else "new",
        )
        self.last_error = None
        filters = self.filters
        if not filters:
            self._ready()
            return
        # connected counts from the SUBACK: a message published once wait_connected() returned
        # (or once the agent said it is online) reaches a subscription, even in a new session
        if self._v5:
            _, mid = client.subscribe([(t, SubscribeOptions(qos=1)) for t in filters])
        else:
            _, mid = client.subscribe([(t, 1) for t in filters])
        self._subscribing = mid

    def _handle_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        props: Properties | None,
    ) -> None:
        if mid != self._subscribing:
            return
        self._subscribing = None
        refused = [t for t, r in zip(self.filters, reasons, strict=False) if r.is_failure]
        if refused:
            log.warning("the broker refused the subscription to %s", ", ".join(refused))
        self._ready()

    def _ready(self) -> None:
        self._connected.set()
        if self._on_connect_cb is not None:
            self._on_connect_cb()

    def _handle_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        self._generation += 1
        self._subscribing = None
        was = self._connected.is_set()
        self._connected.clear()
        if was and not self._closing:
            log.warning(
                "disconnected from %s:%d: %s; reconnecting", self.cfg.host, self.cfg.port, reason
            )

    def _handle_message(
        self, client: paho.Client, userdata: Any, message: paho.MQTTMessage
    ) -> None:
        self._deliver(message.topic, bytes(message.payload), message.qos, message.mid,
                      time.time())

    def _deliver(self, topic: str, payload: bytes, qos: int, mid: int, now: float) -> None:
        """A message read, by paho or by :meth:`_take`."""
        if topic == self.probe_topic:
            if qos > 0 and self._manual_ack:
                self._client.ack(mid, qos)
            pending = self._probe
            if pending is not None and payload == pending[0]:
                self._probe = None
                self._probe_armed = True
            return
        self._read += 1
        if qos > 0:
            with self._count:
                self._unacked += 1
        self._on_message(Message(topic, payload, qos, mid, now, self._generation))
