"""How fast a loaded model reads a prompt and writes tokens, and what the process holds: the
measurements `edge-agent doctor`'s trial and `edge-agent bench model` both print."""

from __future__ import annotations

import os
import time
from pathlib import Path

from agent.inference.model import Model

# ~75-100 tokens with SmolLM2's tokenizer: longer than the 64 the trial asks for
PROMPT = (
    "You are the controller of a small greenhouse. The air temperature has risen from 21 to "
    "29 degrees Celsius over the last hour, the relative humidity is 78 percent, the soil "
    "moisture sensor reads 41 percent and the vents are closed. Explain step by step what "
    "you would do next, and why, in plain words for the gardener. Answer:"
)
STORY = "Once upon a time, in a small village by the sea, there lived"  # never ends at once


def prompt_speed(model: Model, prompt: str = PROMPT) -> tuple[float, int]:
    """(tokens per second, tokens) evaluating ``prompt`` once, with no prefix cache."""
    model.generate("Hello", "", max_tokens=1)  # warm-up: first-call allocations not timed
    model.clear_prefix_cache()
    evaluated = model.stats.evaluated_tokens
    started = time.perf_counter()
    model.generate(prompt, "", max_tokens=1)
    seconds = time.perf_counter() - started
    count = model.stats.evaluated_tokens - evaluated
    return (count / seconds if seconds > 0 else 0.0), count


def generation_speed(model: Model, tokens: int) -> tuple[float, int]:
    """(new tokens per second, tokens), not counting the (short, cached) prompt."""
    model.generate(STORY, "", max_tokens=1)  # caches the prompt: what follows is generation
    generated = model.stats.generated_tokens
    started = time.perf_counter()
    model.generate(STORY, "", max_tokens=tokens)
    seconds = time.perf_counter() - started
    count = model.stats.generated_tokens - generated
    return (count / seconds if seconds > 0 else 0.0), count


def resident_mb() -> float | None:
    """This process's resident memory (Linux ``/proc``); None where it cannot be read."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
