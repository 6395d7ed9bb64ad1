"""Reloading the configuration on SIGHUP: sensors, policies, interlocks and diagnosis change in
place; what needs a restart is named; a bad file is refused and the running one kept."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from agent.config import Config, load_config
from agent.errors import ConfigError

if TYPE_CHECKING:
    from agent.service.runtime import Agent

log = logging.getLogger(__name__)

# sections read once at start: a change to one of them takes a restart
AT_START = (
    "agent", "mqtt", "storage", "model", "security", "intents", "metrics", "homeassistant",
    "service", "features",
)


def needs_restart(old: Config, new: Config) -> list[str]:
    """What changed from ``old`` to ``new`` that only a restart applies."""
    later = [name for name in AT_START if getattr(new, name) != getattr(old, name)]
    if [p.peers for p in new.policies] != [p.peers for p in old.policies]:
        later.append("policies[].peers")
    if bool(new.policies) != bool(old.policies):
        later.append("policies (from none or to none)")
    if new.diagnosis.enabled and not old.diagnosis.enabled:
        later.append("diagnosis.enabled (watching the actuators' commands)")
    return later


def reload(agent: Agent, path: Path) -> bool:
    """Apply new sensor settings, policies, interlocks and diagnosis settings from ``path``
    without dropping a reading; a bad file is refused and the running configuration kept."""
    from agent.policy.intents import Registry
    from agent.policy.safety import SafetyLayer
    from agent.service.policies import swap_decisions

    try:
        new = load_config(path)
        merged = agent.config.model_copy(
            update={
                "sensors": new.sensors,
                "policies": new.policies,
                "interlocks": new.interlocks,
                "diagnosis": new.diagnosis,
            }
        )
        safety = SafetyLayer(merged)
    except ConfigError as exc:
        log.error(
            "reload of %s refused, the running configuration stays: %s",
            path,
            "; ".join(exc.errors),
        )
        return False
    later = needs_restart(agent.config, new)
    if later:
        log.warning("reload: %s changed; restart the agent to apply that", ", ".join(later))
    if agent.config.security.roster_file is not None:
        agent.peers.reload_roster()
    agent.ingestor.call(lambda: agent.pipeline.reconfigure(merged)).result(timeout=30)
    if agent.decisions is not None and bool(merged.policies):
        swap_decisions(agent, merged, safety)
        agent.registry = Registry(merged)
    agent.health.reconfigure(merged)
    agent.config = merged
    agent.homeassistant.config = merged
    agent.schedule_health()
    log.info("reloaded sensors, policies, interlocks and diagnosis from %s", path)
    agent.publish_status()
    return True
