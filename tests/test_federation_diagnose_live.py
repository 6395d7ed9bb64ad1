"""Federated learning of a diagnose head between two real agents on a real broker.

Two ``edge-agent run`` processes in one peer group federate the diagnose head of each quantity
(``diagnosis.federated``) on ``{p}/groups/{G}/fl/diagnose-{quantity}/...``: only head
parameters go over the wire, and each member installs the federated head only if its own
held-out diagnose gate finds it no worse; its status says which, and why.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.broker import Mosquitto
from agent.policy.signing import generate_key_file
from tests.conftest import AgentProcess, Collector, member_config, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.slow]

AGENTS = ["d1", "d2"]
FED = "diagnose-temperature"
ROUND = f"edge/groups/house/fl/{FED}/round"


def diagnose_member(tmp_path: Path, port: int, agent_id: str, key: Path) -> Path:
    path = member_config(tmp_path, port, agent_id, key, engine="rules", peers={
        "group": "house", "method": "mean", "quorum": 1, "deadline": "1s"})
    data = yaml.safe_load(path.read_text())
    data["diagnosis"].update(engine_after="1s", group="house", federated={
        "rounds": 2, "epochs": 30, "deadline": "4m", "start_after": "1s", "min_members": 2})
    path.write_text(yaml.safe_dump(data))
    return path


def test_two_agents_federate_a_diagnose_head_through_the_gate(
        tmp_path: Path, broker: Mosquitto, agent_factory: Callable[[Path], AgentProcess],
        collector_factory: Callable[..., Collector]) -> None:
    key = tmp_path / "command.key"
    generate_key_file(key)
    watch = collector_factory(broker.port, "edge/agents/+/status", "edge/groups/house/fl/#")
    agents = {a: agent_factory(diagnose_member(tmp_path, broker.port, a, key)) for a in AGENTS}

    def failed(what: str) -> str:
        return what + "\n" + "\n".join(f"--- {a}\n{p.log()[-3000:]}" for a, p in agents.items())

    def reported() -> dict[str, dict[str, Any]]:
        out = {}
        for a in AGENTS:
            statuses = watch.on(f"edge/agents/{a}/status")
            if statuses and FED in statuses[-1].get("federation", {}):
                out[a] = statuses[-1]
        return out

    try:
        wait_for(lambda: any(r["stage"] == "final" for r in watch.on(ROUND)), timeout=600,
                 what="the final round of the diagnose head's federation")
        wait_for(lambda: len(reported()) == 2 and all(
            s["federation"][FED].get("stage") == "final" and "gate" in s["federation"][FED]
            for s in reported().values()), timeout=60, what="both members' gate verdicts")
    except AssertionError as exc:
        raise AssertionError(failed(str(exc))) from None

    rounds = watch.on(ROUND)
    assert rounds[0]["coordinator"] == "d1" and rounds[0]["members"] == AGENTS
    assert rounds[0]["policy"] == FED and "ok" in rounds[0]["classes"]
    for a in AGENTS:  # an update carries the head's parameters, never a window or a digest
        for update in watch.on(f"edge/groups/house/fl/{FED}/update/{a}"):
            assert set(update) <= {"group", "policy", "session", "round", "attempt", "stage",
                                   "agent", "count", "masked", "data", "signer", "sig"}, \
                sorted(update)
            assert update["policy"] == FED and isinstance(update["data"], str)
    for agent, status in reported().items():
        fed = status["federation"][FED]
        assert fed["ready"] and fed["diagnose"] == "temperature" and fed["answered"] >= 2
        gate = fed["gate"]
        assert isinstance(gate["installed"], bool) and gate["reason"], (agent, gate)
        assert gate["source"].startswith("federated (session ")
        assert gate["session"] == rounds[-1]["session"]
        health_gate = status["health"]["gates"]["temperature"]
        if gate["installed"]:  # the gate of what runs now is the federated head's
            assert fed["adopted"] >= 1 and health_gate["source"] == gate["source"]
            assert "federated head installed" in agents[agent].log()
        else:  # refused: by the member's held-out accuracy, or by the diagnose gate
            assert gate["reason"].startswith(("worse than the installed engine on ",
                                              "less accurate on this member's held-out")), gate
            assert health_gate.get("source") is None
    for p in agents.values():
        assert "Traceback" not in p.log()
