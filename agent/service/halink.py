"""This agent in Home Assistant: MQTT discovery announced when HA (re)starts, when the agent
connects and when a new series appears, and the cleaned values published for its sensors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent import __version__
from agent.config import Config
from agent.mqtt import Message
from agent.pipeline.core import Processed
from agent.service.homeassistant import (
    Announcement,
    clean_payload,
    clean_topic,
    discovery_messages,
    should_announce,
)


class HomeAssistantLink:
    """``schedule(fn)`` runs ``fn`` soon on the scheduler (one waiting at most); ``series()``
    lists the stored (device, quantity) pairs; ``stopping()`` is true once the agent stops."""

    def __init__(
        self,
        config: Config,
        agent_id: str,
        publish: Callable[..., Any],
        schedule: Callable[[Callable[[], None]], None],
        series: Callable[[], list[tuple[str, str]]],
        stopping: Callable[[], bool],
    ) -> None:
        self.config = config
        self.agent_id = agent_id
        self.publish = publish
        self.schedule = schedule
        self.series = series
        self.stopping = stopping
        self.topic_status = f"{config.homeassistant.prefix}/status"
        self._announced: set[tuple[str, str]] = set()

    @property
    def enabled(self) -> bool:
        return self.config.homeassistant.discovery

    def filters(self) -> list[str]:
        return [self.topic_status] if self.enabled else []

    def on_ha_status(self, msg: Message) -> None:
        """Home Assistant came online: announce again (its retained copies may be gone)."""
        if should_announce(msg.topic, msg.payload, self.config.homeassistant.prefix):
            self.schedule(self.announce)

    def on_connected(self) -> None:
        if self.enabled and not self.stopping():
            self.schedule(self.announce)

    def announce(self) -> None:
        """MQTT discovery: cleaned sensors, decisions and connectivity, retained."""
        series = self.series()
        self._announced = set(series)
        cfg = self.config
        announcement = Announcement(
            cfg.mqtt.prefix,
            self.agent_id,
            __version__,
            series,
            {q: s.unit for q, s in cfg.sensors.items()},
            {p.name: list(p.actuators[0].actions) for p in cfg.policies if p.targets},
            cfg.homeassistant.prefix,
        )
        for topic, payload in discovery_messages(announcement):
            self.publish(topic, payload, qos=1, retain=True)

    def publish_clean(self, rows: list[Processed]) -> None:
        """The newest cleaned value of each series just stored; a new series is announced."""
        latest = {(p.reading.device, p.reading.quantity): p for p in rows}
        for (device, quantity), p in latest.items():
            self.publish(
                clean_topic(self.config.mqtt.prefix, self.agent_id, device, quantity),
                clean_payload(p.clean, p.reading.ts, p.unit),
                qos=0,
                retain=True,
            )
        if not set(latest) <= self._announced and not self.stopping():
            self._announced |= set(latest)
            self.schedule(self.announce)
