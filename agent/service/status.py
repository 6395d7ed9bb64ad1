"""The agent's status payload (SPEC 3, with our additions): what it runs, what it has seen,
how its policies, peers, federations and intents are doing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent import __version__

if TYPE_CHECKING:
    from agent.service.runtime import Agent


def status_payload(agent: Agent, state: str) -> dict[str, Any]:
    """``agent``'s status as ``state`` ("online" or "offline"); safe while it is being built."""
    return {
        "state": state,
        "ts": agent.clock(),
        "version": __version__,
        "model": model_status(agent),
        "model_state": agent.model_state["state"],
        "model_sha256": None if agent.model is None else agent.model.sha256,
        "uptime_s": round(agent.clock() - agent.started, 3),
        "readings_total": agent.ingestor.rows_total,
        "rejected_total": agent.ingestor.counters.rejected,
        "dropped_total": agent.ingestor.counters.dropped + agent.states_ignored,
        "inbound_stalls": agent.mqtt.stalls if hasattr(agent, "mqtt") else 0,
        "outbox_depth": 0 if agent.outbox is None else agent.outbox.depth,
        "queue_depth": agent.ingestor.depth(),
        "groups": agent.peers.groups if hasattr(agent, "peers") else [],
        **({} if agent.intents is None else {"intents": agent.intents.status()}),
        **({"peers": agent.peers.status()} if hasattr(agent, "peers") and agent.peers.trackers
           else {}),
        **({"health": agent.health.status()} if hasattr(agent, "health") else {}),
        **(
            {"federation": agent.federation.status()}
            if hasattr(agent, "federation") and agent.federation.feds
            else {}
        ),
        "policies": {}
        if agent.decisions is None
        else {name: st.status() for name, st in agent.decisions.states.items()},
    }


def model_status(agent: Agent) -> str | dict[str, str] | None:
    """The file name (SPEC 3); while the model cannot run, an object saying why."""
    name = None if agent.model is None else agent.model.name
    if agent.model_state["state"] == "unusable" and name is not None:
        return {**agent.model_state, "file": name}
    return name
