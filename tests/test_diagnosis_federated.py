"""A federated diagnose head goes through the member's own diagnose gate before it is installed
(agent.service.diagnosing.DiagnoseLearning.install_federated); fast: a stand-in embedding."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.diagnosis.engine import KindScore, Pick
from agent.service.diagnosing import DiagnoseLearning
from agent.service.health import HealthService
from agent.storage import Store
from tests.test_diagnosis_service import KEY, Recorder, config


def embed(text: str) -> np.ndarray:
    """A deterministic vector per text (not a model: only the plumbing is under test)."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    return np.random.default_rng(seed).standard_normal(16).astype(np.float32)


def test_a_federated_head_is_installed_only_if_the_gate_finds_it_no_worse(
        tmp_path: Path) -> None:
    store = Store(tmp_path / "x.db")

    def on_db(fn: Callable[[], Any]) -> Future[Any]:
        done: Future[Any] = Future()
        done.set_result(fn())
        return done

    svc = HealthService(config(tmp_path), "pi", publish=Recorder(), key=KEY, clock=lambda: 1.8e9)
    learning = DiagnoseLearning(svc, embed, "0" * 64, tmp_path / "data", store, on_db)
    learning.prepare()
    assert learning.ready.is_set() and "temperature" in learning.heads
    x, y, hx, hy, head = learning.federation_data("temperature")
    assert len(x) == len(y) > 0 and len(hx) == len(hy) > 0 and x.shape[1] == 16
    assert "ok" in head.classes

    # the same head again: no worse on any kind, installed, and the gate says where it came from
    installed, why = learning.install_federated("temperature", head, "federated (session s, "
                                                "round 2)")
    assert installed, why
    assert svc.status()["gates"]["temperature"]["source"] == "federated (session s, round 2)"

    # against an engine that is perfect on every kind, it is worse somewhere: refused, unchanged
    kinds = sorted(learning.picks["temperature"].statistical)
    perfect = {k: KindScore(1.0, 1.0, 1) for k in kinds}
    learning.picks["temperature"] = Pick({k: "model" for k in kinds}, perfect, perfect)
    before = (dict(svc.diagnoser.engines), svc.status()["gates"])
    installed, why = learning.install_federated("temperature", head, "federated (session t, "
                                                "round 2)")
    assert not installed and why.startswith("worse than the installed engine on "), why
    assert (dict(svc.diagnoser.engines), svc.status()["gates"]) == before
    store.close()


def test_diagnosis_federates_only_with_a_group_of_its_policies(tmp_path: Path) -> None:
    import yaml

    from agent.config import parse_config, read_yaml
    from agent.errors import ConfigError
    from tests.conftest import EXAMPLE_CONFIG

    data = read_yaml(EXAMPLE_CONFIG.read_text())
    data["security"]["command_key_file"] = str(tmp_path / "command.key")
    (tmp_path / "command.key").write_bytes(KEY)
    data["policies"][0]["peers"] = {"group": "house"}

    def parsed(**diagnosis: Any) -> Any:
        data["diagnosis"].update(diagnosis)
        return parse_config(yaml.safe_dump(data))

    with pytest.raises(ConfigError, match="federated needs a group"):
        parsed(group="house")
    with pytest.raises(ConfigError, match="peer group of no policy"):
        parsed(group="garage", federated={"rounds": 2})
    cfg = parsed(group="house", federated={"rounds": 2})
    assert cfg.diagnosis.group == "house" and cfg.diagnosis.federated.rounds == 2
