"""Model updates in the running agent: the receiver started when an update key is set, and a
received file installed: trial-loaded as the new worker, the pointer moved, inference swapped,
the heads retrained for the new model; a refusal reported on the error topic."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import AgentError
from agent.inference import store as model_store
from agent.inference.locate import ModelFile
from agent.inference.trial import tried_model
from agent.service import modelreceiver, modelupdate, updatekey
from agent.service.manifest import Manifest

if TYPE_CHECKING:
    from agent.service.runtime import Agent

log = logging.getLogger(__name__)


def start_model_updates(agent: Agent, key: updatekey.PublicKey) -> None:
    assembler = modelupdate.Assembler(agent.config.agent.data_dir, key, agent.id, agent.clock)
    agent.updates = modelreceiver.Receiver(
        assembler,
        agent.prefix,
        agent.id,
        ack=agent.mqtt.ack,
        on_assembled=lambda path, manifest: install_model(agent, path, manifest),
        on_refused=agent.report_model_refusal,
    )
    agent.updates.start()


def install_model(agent: Agent, path: Path, manifest: Manifest) -> None:
    """On the model-update thread: trial-load, move the pointer, swap inference, report."""
    from agent.inference.threads import pick_threads
    from agent.inference.worker import InferenceWorker
    from agent.service.contextsize import run_context
    from agent.service.policies import swap_decisions

    cfg, old = agent.config.model, agent.model
    threads = pick_threads(cfg.threads)
    # sized as at start, by the new model's own tokens (it may split text differently)
    context = run_context(agent.config, path)
    worker = InferenceWorker(tried_model(ModelFile(path, manifest.sha256), threads, context))

    def trial(p: Path) -> None:  # the trial is the new worker's own load: one load, not two
        worker.start()
        worker.wait_ready(120)
        worker.call(lambda m: m.embed("ok"), 60)

    try:
        model_store.install(
            path,
            None if old is None else old.path,
            trial if agent.worker is not None else model_store.trial_load(threads, context),
            ts=manifest.ts,
            version=manifest.version,
        )
    except AgentError as exc:
        worker.stop(5)
        topic = modelupdate.update_topic(agent.prefix, agent.id)
        agent.report_model_refusal(topic, f"model update {manifest.sha256} refused: {exc}")
        return
    if agent.worker is not None:
        old_worker, agent.worker = agent.worker, worker
        if agent.decisions is not None:  # heads are keyed by the model's hash: retrain
            agent.decisions.worker = worker
            swap_decisions(agent, agent.config, agent.decisions.safety,
                           model_sha256=manifest.sha256)
        old_worker.stop(30)
    else:
        worker.stop(5)
    # status names the new model only once the decisions run on it
    agent.model = ModelFile(path, manifest.sha256)
    log.info("model %s (sha256 %s) is now running", manifest.name, manifest.sha256)
    agent.publish_status()
