"""Federated fine-tuning: the devices of a group average their LoRA adapters over MQTT.

``edge-agent tune --policy NAME --federate GROUP`` on every device of the group: each one
makes its training samples from its own policy and audit history (they never leave it),
joins the vector federation ``tune-<target>`` of :mod:`agent.peers.vectors`, and for each
round loads the global adapter weights into its model, trains ``steps / rounds`` local
steps, and sends its A and B matrices with its sample count. The coordinator (the lowest id
that joined) averages them, weighted by count (FedAvg of the A and B matrices separately,
as federated LoRA usually does: the product of the averages is not the average of the
products, which is why each round starts everyone from the same averaged pair). The final
average becomes an adapter GGUF that each device scores on its own held-out set against the
model it uses now, and installs only if strictly better, exactly like a local run.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from agent.config import MqttSection
from agent.errors import AgentError
from agent.peers import fedavg as fa
from agent.peers.coordinator import FlSettings
from agent.peers.member import VectorMember
from agent.peers.rounds import RoundMessage
from agent.peers.vectors import VectorFederation
from agent.tune.train import Example, Trained

if TYPE_CHECKING:
    from agent.tune.train import Tuner

Echo = Callable[[str], None]
Matrix = npt.NDArray[np.float32]
Lora = dict[str, tuple[Matrix, Matrix]]
Layout = list[tuple[str, tuple[int, ...], tuple[int, ...]]]


@dataclass(frozen=True)
class FedTune:
    """Where and how this device federates its tuning (``edge-agent tune --federate``)."""

    mqtt: MqttSection
    agent_id: str
    group: str
    target: str  # what is tuned (``policy-<name>`` or ``intents``): the federation's name
    rounds: int = 3
    min_members: int = 2
    deadline: float = 1800.0  # a round waits this long for the members' adapters
    timeout: float = 6 * 3600.0  # the whole federation

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.min_members < 1 or not self.deadline > 0:
            raise AgentError(f"bad federation settings: rounds {self.rounds}, min_members "
                             f"{self.min_members}, deadline {self.deadline}")

    def check_broker(self, timeout: float = 10.0) -> None:
        """Fail now, not after an hour of scoring and training, if the broker is out of reach."""
        from agent.mqtt import MqttClient

        cfg = self.mqtt.model_copy(update={"subscriptions": [], "session_expiry": 0.0})
        client = MqttClient(cfg, f"edge-agent-fl-check-{self.agent_id}"[:64], will=None,
                            on_message=lambda _: None, manual_ack=False)
        client.start()
        try:
            if not client.wait_connected(timeout):
                raise AgentError(f"cannot reach the broker {cfg.host}:{cfg.port} to federate: "
                                 f"{client.last_error or 'no answer'}")
        finally:
            client.stop()

    def train(self, tuner: Tuner, examples: Sequence[Example], echo: Echo) -> Trained:
        """Train as a member of the federation instead of alone: the result is the group's
        averaged adapter, with this device's own steps, time and memory."""
        return federate(self, tuner, examples, echo)


def flatten(lora: Lora) -> tuple[fa.Array, Layout]:
    """One vector of every module's A then B, in module order, and how to cut it again."""
    layout: Layout = []
    parts = []
    for module in sorted(lora):
        a, b = lora[module]
        layout.append((module, a.shape, b.shape))
        parts += [a.ravel(), b.ravel()]
    return np.concatenate(parts).astype(np.float64), layout


def unflatten(vector: fa.Array, layout: Layout) -> Lora:
    need = sum(math.prod(a) + math.prod(b) for _, a, b in layout)
    if need != len(vector):
        raise AgentError(f"{len(vector)} weights for an adapter of {need}")
    out: Lora = {}
    at = 0
    for module, a_shape, b_shape in layout:
        na, nb = math.prod(a_shape), math.prod(b_shape)
        a = np.asarray(vector[at : at + na], dtype=np.float32).reshape(a_shape)
        b = np.asarray(vector[at + na : at + na + nb], dtype=np.float32).reshape(b_shape)
        out[module] = (a, b)
        at += na + nb
    return out


def load_lora(tuner: Tuner, lora: Lora) -> None:
    """Put these A and B matrices into the model's adapters."""
    torch = tuner.torch
    seen = set()
    for name, module in tuner.model.named_modules():
        key = name.removeprefix("base_model.model.")
        if key not in lora or not hasattr(module, "lora_A"):
            continue
        a, b = lora[key]
        with torch.no_grad():
            module.lora_A["default"].weight.copy_(torch.from_numpy(np.ascontiguousarray(a)))
            module.lora_B["default"].weight.copy_(torch.from_numpy(np.ascontiguousarray(b)))
        seen.add(key)
    if seen != set(lora):
        raise AgentError(f"the model has no adapter for {sorted(set(lora) - seen)[:3]}")


def federate(fed: FedTune, tuner: Tuner, examples: Sequence[Example], echo: Echo) -> Trained:
    total_steps = tuner.settings.steps
    per_round = max(1, total_steps // fed.rounds)
    initial, layout = flatten(tuner.lora_weights())
    losses: list[float] = []
    done = {"steps": 0, "seconds": 0.0, "peak": 0}
    stopped: list[str] = []

    def train(start: fa.Array, message: RoundMessage) -> fa.Array:
        load_lora(tuner, unflatten(start, layout))
        tuner.settings = replace(tuner.settings, steps=per_round,
                                 seed=tuner.settings.seed + message.round)
        trained = tuner.train(examples, echo)
        losses.extend(trained.losses)
        done["steps"] += trained.steps
        done["seconds"] += trained.seconds
        done["peak"] = max(int(done["peak"]), trained.peak_rss)
        if trained.stopped:
            stopped.append(trained.stopped)
        gc.collect()
        vector, _ = flatten(trained.lora)
        return vector

    member = VectorMember(fed.agent_id, len(examples), train, lambda _: 0.0)
    federation = VectorFederation(
        fed.mqtt, fed.agent_id, fed.group, f"tune-{fed.target}", member, lambda: initial,
        FlSettings(rounds=fed.rounds, epochs=per_round, lr=tuner.settings.lr,
                   deadline=fed.deadline),
        min_members=fed.min_members, echo=echo,
    )
    echo(f"federated tuning in group {fed.group}: {fed.rounds} rounds of {per_round} local "
         f"steps, {len(initial):,} adapter weights ({4 * len(initial) / 2**20:.1f} MB a round "
         f"each way)")
    final = federation.run(fed.timeout)
    echo(f"federation {final.session} finished after round {final.round - 1} with "
         f"{', '.join(final.members)}; sent {federation.traffic.sent / 2**20:.1f} MB, received "
         f"{federation.traffic.received / 2**20:.1f} MB")
    cfg = tuner.config
    return Trained(
        unflatten(final.global_weights(), layout),
        tuner.settings.rank,
        tuner.settings.alpha,
        int(cfg.num_attention_heads),
        int(getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads),
        int(done["steps"]),
        losses,
        float(done["seconds"]),
        int(done["peak"]),
        "; ".join(stopped) or None,
    )
