"""The model-update thread: takes update messages off the MQTT network thread, in order.

Files are written here, never on the MQTT network thread (which also commits readings); each
message is acknowledged once handled, so QoS 1 messages are bounded by what the broker keeps in
flight. QoS 0 ones beyond ``MAX_QUEUED`` waiting are dropped and counted.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path

from agent.mqtt import Message
from agent.service.manifest import Manifest
from agent.service.modelupdate import Assembler, update_topic

log = logging.getLogger(__name__)

MAX_QUEUED = 64  # QoS 0 model-update messages waiting for the receiver thread


class Receiver:
    """Runs an Assembler on its own thread so the MQTT network thread never writes files.

    ``handle(msg)`` takes the model-update messages (False for any other topic); each is
    acknowledged once handled. ``on_assembled(path, manifest)`` runs on this thread with a
    verified file; ``on_refused(topic, reason)`` when a manifest, a chunk or a transfer is
    refused (``topic`` is the message's).
    """

    def __init__(
        self,
        assembler: Assembler,
        prefix: str,
        agent: str,
        *,
        ack: Callable[[Message], None],
        on_assembled: Callable[[Path, Manifest], None],
        on_refused: Callable[[str, str], None] | None = None,
    ) -> None:
        self.assembler = assembler
        self.topic_update = update_topic(prefix, agent)
        self._chunk_prefix = f"{prefix}/agents/{agent}/model/chunk/"
        self._ack = ack
        self._on_assembled = on_assembled
        self._on_refused = on_refused
        self.overflow = 0  # QoS 0 messages dropped because the queue was full
        self._queue: queue.Queue[Message | None] = queue.Queue()
        self._thread = threading.Thread(target=self._main, name="model-update", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def handle(self, msg: Message) -> bool:
        if msg.topic != self.topic_update and not msg.topic.startswith(self._chunk_prefix):
            return False
        if msg.qos == 0 and self._queue.qsize() >= MAX_QUEUED:
            # QoS 1 is bounded by what the broker keeps in flight (we ack once handled); a
            # flood at QoS 0 is not, so what the thread cannot keep up with is dropped
            self.overflow += 1
            if self.overflow & (self.overflow - 1) == 0:  # 1, 2, 4, 8...: a flood logs little
                log.warning("model-update queue full: %d QoS 0 messages dropped", self.overflow)
            return True
        self._queue.put(msg)
        return True

    def _main(self) -> None:
        while (msg := self._queue.get()) is not None:
            try:
                self._process(msg)
            except Exception:  # never let one message end model updates
                log.exception("model update message on %s failed", msg.topic)
            self._ack(msg)

    def _process(self, msg: Message) -> None:
        before = self.assembler.refused
        if msg.topic == self.topic_update:
            self.assembler.on_manifest(msg.payload)
        else:
            sha256, _, index = msg.topic.removeprefix(self._chunk_prefix).partition("/")
            if not (index.isascii() and index.isdigit()) or len(index) > 9:
                self.assembler.dropped += 1
                log.warning("model chunk topic %s has no chunk index; dropped", msg.topic)
                return
            manifest = self.assembler.manifest
            path = self.assembler.on_chunk(sha256, int(index), msg.payload)
            if path is not None and manifest is not None:
                self._on_assembled(path, manifest)
        refused = self.assembler.refused
        if refused is not None and refused is not before and self._on_refused is not None:
            self._on_refused(msg.topic, f"model update {refused[0]} {refused[1]}")
