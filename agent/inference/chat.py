"""The model's own chat template (a sandboxed Jinja2 template from the GGUF metadata),
rendered for one system and one user message."""

from __future__ import annotations

from typing import Any, NoReturn

import jinja2
import llama_cpp
from jinja2.sandbox import ImmutableSandboxedEnvironment

from agent.errors import AgentError


def render(template: jinja2.Template, vocab: Any, system: str, user: str, name: str) -> str:
    """The prompt for ``system`` and ``user`` up to the assistant's turn."""
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    try:
        return template.render(
            messages=messages,
            add_generation_prompt=True,
            bos_token=token_text(vocab, llama_cpp.llama_vocab_bos(vocab)),
            eos_token=token_text(vocab, llama_cpp.llama_vocab_eos(vocab)),
            raise_exception=_template_refused,
        )
    except jinja2.TemplateError as exc:
        raise AgentError(f"the chat template of {name} failed: {exc}") from None


def compile_template(metadata: dict[str, str], name: str) -> jinja2.Template:
    source = metadata.get("tokenizer.chat_template")
    if not source:
        raise AgentError(f"model {name} has no chat template")
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    try:
        return env.from_string(source)
    except jinja2.TemplateError as exc:
        raise AgentError(f"the chat template of {name} does not compile: {exc}") from None


def _template_refused(message: str) -> NoReturn:
    raise AgentError(f"the chat template refused the messages: {message}")


def token_text(vocab: Any, token: int) -> str:
    if token < 0:
        return ""
    return bytes(llama_cpp.llama_vocab_get_text(vocab, token)).decode("utf-8", errors="replace")
