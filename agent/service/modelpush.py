"""Sending a model to an agent: the signed v2 manifest, then every chunk at QoS 1."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.config import MqttSection
from agent.errors import AgentError
from agent.mqtt import MqttClient
from agent.service import updatekey
from agent.service.manifest import Manifest, chunk_size_for, make_manifest
from agent.service.modelupdate import chunk_topic, update_topic

Progress = Callable[[int, int], None]  # (chunks acknowledged, chunks in all)


def push(
    path: Path,
    host: str,
    port: int,
    prefix: str,
    agent: str,
    key: updatekey.PrivateKey,
    chunk_size: int | None = None,
    progress: Progress | None = None,
    *,
    version: int | None = None,
    mqtt: MqttSection | None = None,
    window: int = 16,
    timeout: float = 30.0,
    clock: Callable[[], float] = time.time,
) -> Manifest:
    """Send ``path`` to ``agent``: the manifest signed with the update ``key``, then every
    chunk at QoS 1, at most ``window`` unacknowledged at a time. ``version`` defaults to the
    time in milliseconds (each push newer than the last); ``chunk_size`` to 256 KiB, or more
    for a file that would need more chunks than a manifest lists. ``mqtt`` lends its TLS and
    login settings. Returns the manifest; AgentError if the broker cannot be reached or stops
    acknowledging."""
    now = clock()
    size = chunk_size or chunk_size_for(Path(path).stat().st_size)
    manifest = make_manifest(
        Path(path), agent=agent, version=version or int(now * 1000), chunk_size=size, now=now
    )
    client = _sender(mqtt or MqttSection(), host, port, prefix)
    client.start()
    try:
        if not client.wait_connected(timeout):
            raise AgentError(f"cannot reach the broker at {host}:{port}: {client.last_error}")
        payload = json.dumps(manifest.signed(key), separators=(",", ":")).encode()
        if not client.publish_wait(update_topic(prefix, agent), payload, 1, timeout=timeout):
            raise AgentError("the broker did not acknowledge the manifest")
        topic = chunk_topic(prefix, agent, manifest.sha256, 0)[: -len("0")]
        _send_chunks(client, Path(path), manifest, topic, window, timeout, progress)
    finally:
        client.stop()
    return manifest


def _sender(base: MqttSection, host: str, port: int, prefix: str) -> MqttClient:
    cfg = base.model_copy(
        update={
            "host": host,
            "port": port,
            "prefix": prefix,
            "subscriptions": [],
            "session_expiry": 0.0,
        }
    )
    return MqttClient(
        cfg,
        f"edge-agent-push-{uuid.uuid4().hex[:8]}",
        will=None,
        on_message=lambda _: None,
        manual_ack=False,
    )


def _send_chunks(
    client: MqttClient,
    path: Path,
    manifest: Manifest,
    topic: str,
    window: int,
    timeout: float,
    progress: Progress | None,
) -> None:
    """Publish every chunk (``topic`` + index), waiting for the oldest once ``window`` are
    unacknowledged: memory stays at ``window`` chunks whatever the file's size."""
    pending: list[Any] = []
    done, chunks = 0, manifest.chunks
    with path.open("rb") as fh:
        for index in range(chunks):
            pending.append(client.publish(f"{topic}{index}", fh.read(manifest.chunk_size), 1))
            while len(pending) >= window or (index == chunks - 1 and pending):
                _wait_acked(pending.pop(0), timeout)
                done += 1
                if progress is not None:
                    progress(done, chunks)


def _wait_acked(info: Any, timeout: float) -> None:
    try:
        info.wait_for_publish(timeout)
    except (RuntimeError, ValueError) as exc:
        raise AgentError(f"a chunk could not be sent: {exc}") from None
    if not info.is_published():
        raise AgentError(f"the broker did not acknowledge a chunk within {timeout} s")
