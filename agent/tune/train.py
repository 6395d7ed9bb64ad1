"""LoRA fine-tuning on CPU: the only importer of torch, transformers and peft.

transformers reads the base GGUF file itself (dequantising it to float32) and its tokenizer;
peft wraps the attention projections with rank-``rank`` adapters; plain AdamW trains them
on the answer tokens only (the prompt is context, not a target). Progress is reported each
step (loss, seconds per step, ETA, resident memory); training stops early, keeping what it
learnt, when ``max_seconds`` is reached or the process grows past ``max_rss`` bytes.

torch's OpenMP threads spin-wait like llama.cpp's: on a busy machine that made two threads
5x slower than one, so they wait passively and their number comes from the free cores.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # must precede the first torch import
os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF reader draws a progress bar

import logging
import math
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psutil

from agent.errors import AgentError

log = logging.getLogger(__name__)

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
MIN_FREE_BYTES = 2 << 30  # what a run of batch 8 needed at its peak, measured: 1.9-2.7 GB


@dataclass(frozen=True, slots=True)
class Example:
    """Token ids of one prompt and of the answer the model should continue it with."""

    prompt: tuple[int, ...]
    answer: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Settings:
    steps: int = 60
    batch: int = 8
    lr: float = 1e-3
    rank: int = 16
    alpha: int = 32
    seed: int = 0
    threads: int = 1
    max_seconds: float = math.inf
    max_rss: int = 6 << 30


@dataclass
class Trained:
    """The adapters' weights by module (``model.layers.3.self_attn.q_proj``): A is
    (rank, in), B is (out, rank), as peft holds them; scale alpha / rank."""

    lora: dict[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]
    rank: int
    alpha: float
    n_head: int
    n_head_kv: int
    steps: int
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    peak_rss: int = 0
    stopped: str | None = None  # why training ended before ``steps``, if it did


Progress = Callable[[str], None]


class Tuner:
    """The base model in torch with LoRA adapters on it, ready to train."""

    def __init__(self, gguf: Path, settings: Settings) -> None:
        check_memory()
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        torch.set_num_threads(settings.threads)
        torch.manual_seed(settings.seed)
        self.settings = settings
        self.torch = torch
        folder, name = str(gguf.parent), gguf.name
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
                base = AutoModelForCausalLM.from_pretrained(
                    folder, gguf_file=name, dtype=torch.float32
                )
        except (OSError, ValueError, RuntimeError) as exc:
            raise AgentError(f"cannot load {gguf} for training: {exc}") from None
        self.config = base.config
        lora = LoraConfig(
            r=settings.rank,
            lora_alpha=int(settings.alpha),
            lora_dropout=0.0,
            target_modules=list(TARGET_MODULES),
            bias="none",
            task_type="CAUSAL_LM",
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self.model = get_peft_model(base, lora)
        eos = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if not isinstance(eos, int):
            raise AgentError(f"{gguf.name} has no <|im_end|> token: not a ChatML model")
        self.eos = eos

    def trainable(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def encode(self, prompt: str, answer: str) -> Example:
        """The prompt as llama.cpp reads it (special tokens parsed) and the answer, then the
        end-of-turn token, so the model also learns to stop."""
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        out = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
        return Example(tuple(ids), (*out, self.eos))

    def train(self, examples: Sequence[Example], progress: Progress) -> Trained:
        if not examples:
            raise AgentError("no training examples")
        s = self.settings
        torch = self.torch
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimiser = torch.optim.AdamW(params, lr=s.lr, weight_decay=0.0)
        rng = random.Random(s.seed)
        order: list[int] = []
        result = self._result(0)
        started = time.monotonic()
        process = psutil.Process()
        self.model.train()
        for step in range(s.steps):
            if not order:
                order = list(range(len(examples)))
                rng.shuffle(order)
            picked = [examples[order.pop()] for _ in range(min(s.batch, len(order)))]
            for group in optimiser.param_groups:
                group["lr"] = _schedule(step, s.steps, s.lr)
            loss = self._step(optimiser, picked)
            result.losses.append(loss)
            result.steps = step + 1
            elapsed = time.monotonic() - started
            rss = process.memory_info().rss
            result.peak_rss = max(result.peak_rss, rss)
            per_step = elapsed / (step + 1)
            progress(
                f"step {step + 1}/{s.steps} loss {loss:.3f} {per_step:.1f} s/step "
                f"ETA {_duration(per_step * (s.steps - step - 1))} rss {rss / 2**30:.2f} GB"
            )
            if step + 1 < s.steps and elapsed + per_step > s.max_seconds:
                result.stopped = f"time limit reached after {step + 1} steps"
                break
            if rss > s.max_rss:
                result.stopped = f"memory limit reached after {step + 1} steps"
                break
        result.seconds = time.monotonic() - started
        result.lora = self.lora_weights()
        return result

    def _step(self, optimiser: Any, batch: list[Example]) -> float:
        torch = self.torch
        width = max(len(e.prompt) + len(e.answer) for e in batch)
        pad = self.eos
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, e in enumerate(batch):
            seq = e.prompt + e.answer
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
            labels[row, len(e.prompt) : len(seq)] = torch.tensor(e.answer)
        out = self.model(input_ids=ids, attention_mask=mask, labels=labels)
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
        return float(out.loss.detach())

    def lora_weights(self) -> dict[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]:
        out = {}
        for name, module in self.model.named_modules():
            if not hasattr(module, "lora_A") or "default" not in module.lora_A:
                continue
            a = module.lora_A["default"].weight.detach().numpy().astype(np.float32)
            b = module.lora_B["default"].weight.detach().numpy().astype(np.float32)
            out[name.removeprefix("base_model.model.")] = (a, b)
        return out

    def _result(self, steps: int) -> Trained:
        cfg = self.config
        return Trained(
            {},
            self.settings.rank,
            self.settings.alpha,
            int(cfg.num_attention_heads),
            int(getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads),
            steps,
        )


def check_memory(need: int = MIN_FREE_BYTES) -> None:
    available = psutil.virtual_memory().available
    if available < need:
        raise AgentError(
            f"not enough free memory to fine-tune: {available / 2**30:.1f} GB available, "
            f"{need / 2**30:.1f} GB needed"
        )


def _schedule(step: int, steps: int, lr: float) -> float:
    """A short linear warm-up, then linear decay to a tenth."""
    warm = max(1, steps // 10)
    if step < warm:
        return lr * (step + 1) / warm
    return lr * (1.0 - 0.9 * (step - warm) / max(1, steps - warm))


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"
