"""The running agent's model context: no larger than its longest prompt needs.

Each token of context costs memory whether used or not (the KV cache: about 23 kB a token for
the bundled model, 47 MB at 2048). The longest prompt the agent builds at run time is an
intent's: the system prompt listing every actuator the configuration names, the request (at
most ``MAX_TEXT`` characters, so at most that many tokens) and the reply. ``model.context``
stays the upper bound."""

from __future__ import annotations

import logging
from pathlib import Path

from agent.config import Config
from agent.errors import AgentError
from agent.inference.native import count_tokens
from agent.policy.engines import llm_system_prompt
from agent.policy.intents import MAX_TEXT, Registry, system_prompt

log = logging.getLogger(__name__)

TEMPLATE = 64  # the chat template's tokens around system and user text
REPLY = 64  # the most tokens an intent's reply is given (agent.service.modelcalls)
FLOOR = 512  # never smaller: an llm decision's digest and options, with room to spare
STEP = 128


def run_context(config: Config, model: Path) -> int:
    """``model.context``, or less if the longest prompt of this configuration needs less."""
    texts = [system_prompt(list(Registry(config).targets))]
    texts += [llm_system_prompt(p) for p in config.policies]
    try:
        longest = count_tokens(model, texts)
    except AgentError as exc:
        log.warning("%s; model context stays %d", exc, config.model.context)
        context = config.model.context
    else:
        needed = longest + MAX_TEXT + TEMPLATE + REPLY
        context = min(config.model.context, max(FLOOR, -(-needed // STEP) * STEP))
    log.info("model context: %d tokens (model.context %d)", context, config.model.context)
    return context
