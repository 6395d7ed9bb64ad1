"""The policies in the running agent: decisions, intents and the outbox built from the
configuration, their jobs scheduled, the engines prepared off the start-up path, and the
decisions swapped for new ones on a reload or a model update."""

from __future__ import annotations

import logging
import math
import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from agent.config import Config
from agent.errors import AgentError, NeedsModel
from agent.inference.trial import tried_model

if TYPE_CHECKING:
    from agent.service.runtime import Agent

log = logging.getLogger(__name__)


def build_decisions(agent: Agent) -> None:
    from agent.inference.threads import pick_threads
    from agent.inference.worker import InferenceWorker
    from agent.policy.confirm import Confirmations
    from agent.policy.intents import Registry
    from agent.policy.safety import SafetyLayer
    from agent.policy.signing import load_key
    from agent.service.contextsize import run_context
    from agent.service.decisions import DecisionService
    from agent.service.intentqueue import IntentQueue
    from agent.service.intents import IntentHandler, log_confirming
    from agent.service.outbox import Outbox

    cfg = agent.config
    if cfg.security.command_key_file is None:
        raise AgentError("policies need security.command_key_file (the key that signs commands)")
    key = load_key(cfg.security.command_key_file)
    model = agent.model
    if model is not None:  # for embed/llm engines and for intents
        context = run_context(cfg, model.path)
        agent.worker = InferenceWorker(
            tried_model(model, pick_threads(cfg.model.threads), context)
        )
        agent.model_state = {"state": "loading"}
    agent.outbox = Outbox(agent.mqtt, agent.ingestor.call, agent.store, agent.clock)
    agent.decisions = DecisionService(
        cfg,
        agent_id=agent.id,
        pipeline=agent.pipeline,
        safety=SafetyLayer(cfg),
        outbox=agent.outbox,
        publish=agent.publish,
        on_db=agent.ingestor.call,
        store=agent.store,
        worker=agent.worker,
        key=key,
        model_sha256=None if model is None else model.sha256,
        clock=agent.clock,
    )
    agent.registry = Registry(cfg)
    handler = IntentHandler(
        lambda: agent.decisions,
        lambda: agent.registry,
        Confirmations(cfg.intents.confirm_ttl, agent.clock),
    )
    agent.intents = IntentQueue(
        handler.handle,
        agent.reply_intent,
        size=cfg.intents.queue,
        per_minute=cfg.intents.per_minute,
    )
    log_confirming(cfg)
    handler.diagnosis = agent.health.answer
    attach_health(agent, key)


def attach_health(agent: Agent, key: bytes) -> None:
    """Diagnosis signs the safe actions it sends, holds off a policy with a faulty input, and
    tells the safety layer the health that interlocks may name."""
    from agent.service.holding import held

    agent.health.key = key
    decisions = agent.decisions
    if decisions is not None:
        decisions.safety.health = agent.health.lookup  # interlocks that name a fault
        decisions.hold = lambda policy, trigger: held(decisions, agent.health, policy, trigger)
        decisions.input_health = agent.health.inputs
    store, on_db = agent.store, agent.ingestor.call

    def store_label(row: dict[str, Any]) -> None:  # people's answers, on the database thread
        on_db(lambda: store.diagnosis_label_add(**row))

    agent.health.store_label = store_label


def start_decisions(agent: Agent) -> None:
    decisions, outbox = agent.decisions, agent.outbox
    assert decisions is not None and outbox is not None
    if agent.worker is not None:
        agent.worker.start()
    decisions.restore_history()
    outbox.resume()
    if agent.intents is not None:  # after the history: rate limits hold across a restart
        agent.intents.start()
    scheduler = agent.scheduler
    scheduler.add_job(outbox.poll, "interval", seconds=0.5, id="outbox")
    scheduler.add_job(decisions.enforce_interlocks, "interval", seconds=5, id="interlocks")
    scheduler.add_job(
        decisions.learning.retrain, "interval", hours=1, id="retrain", max_instances=1
    )
    schedule_policies(agent)
    if agent.peers.trackers:
        scheduler.add_job(
            agent.peers.tick, "interval", seconds=0.2, id="peers", max_instances=1, coalesce=True
        )
    if agent.federation.feds:
        agent.federation.start()
        scheduler.add_job(agent.federation.tick, "interval", seconds=1, id="federation",
                          max_instances=1, coalesce=True)
    threading.Thread(target=prepare, args=[agent], name="prepare-engines", daemon=True).start()


def schedule_policies(agent: Agent) -> None:
    assert agent.decisions is not None
    for job in agent.scheduler.get_jobs():
        if job.id.startswith("policy-"):
            job.remove()
    now = agent.clock()
    for name, st in agent.decisions.states.items():
        every = st.policy.every
        # peered policies decide just after each multiple of `every`, like their peers
        first = (math.floor(now / every) + 1) * every + 0.05 if st.policy.peers else now + every
        agent.scheduler.add_job(
            decide,
            "interval",
            seconds=every,
            args=[agent, name, "schedule"],
            id=f"policy-{name}",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.fromtimestamp(first, tz=timezone.utc),
        )


def prepare(agent: Agent) -> None:
    """Wait for the model (its trial, then its load), then build and gate the engines."""
    decisions = agent.decisions
    assert decisions is not None
    if agent.worker is not None:
        try:
            agent.worker.wait_ready(420)  # the trial in a child process, then the load
            agent.model_state = {"state": "ready"}
        except AgentError as exc:
            model_unusable(agent, str(exc))
            agent.worker = None
            decisions.worker = None
    agent.model_ready.set()
    try:
        decisions.learning.prepare()
    except Exception:  # a failed gate leaves the policies on rules; it must not end the thread
        log.exception("preparing the policies' engines failed; they run on rules")
    agent.publish_status()
    schedule_diagnosis(agent)


def schedule_diagnosis(agent: Agent) -> None:
    """The diagnose engines, ``diagnosis.engine_after`` from now (agent.service.diagnosing)."""
    from agent.service.diagnosing import DiagnoseLearning

    cfg, calls = agent.config.diagnosis, agent.decisions
    if not cfg.enabled or cfg.engine != "auto" or agent.worker is None or calls is None:
        return
    sha = calls.model_sha256 or ""
    learning = DiagnoseLearning(agent.health, calls.model.embed, sha, agent.config.agent.data_dir,
                                agent.store, agent.ingestor.call)
    agent.federation.diagnosing = learning  # its heads join the group's federation, if any

    def run() -> None:
        try:
            learning.prepare()
        except Exception:  # the statistical detectors stay; the agent goes on
            log.exception("preparing the diagnose engines failed; statistical detectors only")
        agent.publish_status()

    start = datetime.fromtimestamp(time.time() + cfg.engine_after, tz=timezone.utc)
    scheduler = agent.scheduler
    scheduler.add_job(run, "date", run_date=start, id="diagnose-engines")
    scheduler.add_job(learning.retrain, "interval", hours=1, id="diagnose-retrain",
                      max_instances=1)
    scheduler.add_job(learning.fill, "interval", seconds=5, id="diagnose-fill", max_instances=1,
                      coalesce=True)


def model_unusable(agent: Agent, reason: str) -> None:
    agent.model_state = {"state": "unusable", "reason": reason}
    log.error("model unusable: %s; policies run on rules, intents are refused", reason)
    agent.report_error(agent.topic_status, f"model unusable: {reason}")


def decide(agent: Agent, name: str, trigger: str, *, rules_only: bool = False) -> None:
    """One policy's decision now (a scheduled run or a band crossing), timed for metrics;
    ``rules_only``: see ``DecisionService.run``."""
    if agent.decisions is None or agent.stopping:
        return
    started = time.monotonic()
    try:
        agent.decisions.run(name, trigger, rules_only=rules_only)
        if agent.metrics is not None:
            engine = agent.decisions.states[name].engine.name
            agent.metrics.observe_decision(name, engine, time.monotonic() - started)
    except NeedsModel:
        raise
    except AgentError as exc:
        log.error("policy %s: %s", name, exc)


def swap_decisions(
    agent: Agent, config: Config, safety: Any, model_sha256: str | None = None
) -> None:
    """New decisions for a new configuration or model; the old ones stop preparing."""
    from agent.service.decisions import DecisionService

    old = agent.decisions
    assert old is not None and agent.outbox is not None
    new = DecisionService(
        config,
        agent_id=agent.id,
        pipeline=agent.pipeline,
        safety=safety,
        outbox=agent.outbox,
        publish=agent.publish,
        on_db=agent.ingestor.call,
        store=agent.store,
        worker=agent.worker,
        key=old.key,
        model_sha256=model_sha256 or old.model_sha256,
        clock=agent.clock,
    )
    new.restore_history()
    agent.decisions = new
    attach_health(agent, old.key)
    old.stopping = True
    schedule_policies(agent)
    threading.Thread(target=new.learning.prepare, name="prepare-engines", daemon=True).start()
    if new.model_sha256 != old.model_sha256:
        agent.federation.start()  # the embeddings of the old model are no use to the new one
