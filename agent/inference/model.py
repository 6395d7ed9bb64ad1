"""The in-process language model: embeddings, option scores and greedy, grammar-bound text.

One llama.cpp context on the loaded weights does everything. ``embed`` switches it into
embedding mode for the call (``llama_set_embeddings``), reads the per-token final hidden
states in chunks of ``OUTPUT_CHUNK`` tokens, and mean-pools and L2-normalises them here.
Measured against a second context on the same weights (SmolLM2-135M Q4_1, 1 thread): the
vectors were identical (max difference 0.0) and as fast (~400 ms for 49 tokens), but the
second context cost +48 MB resident with a 2048-token window (+14 MB with 512) before its
first use and +61 MB after it, against +13 MB for sharing. Sharing is free because every
call here starts from an empty or restored KV cache anyway (restoring a 150-token prefix
takes under 1 ms). Chunking matters: embedding mode computes logits for every token, and a
500-token text in one batch grew the process by 140 MB; 32-token chunks keep it at 14 MB, 16-token
chunks at 8 MB for the same speed (8-token chunks: 5 MB, but 10-25% slower).
Those logits (the 49152x576 lm_head) are ~11% of an embedding's time (42 tokens: median 368 ms
against 327 ms for the same tokens with one output); this llama.cpp builds them for every
output of a text-generation architecture, embedding mode and pooling or not, so they stay.

A text to embed can name a leading part of itself that recurs (``fixed``: a policy's input
name and band, see ``agent.policy.digest``). The model is causal, so the hidden states of that
part do not depend on what follows: its KV cells and summed hidden states are kept (an LRU of
``EMBED_PREFIXES``) and only the rest of the text is evaluated; the mean is (kept sum + new
sum) / all tokens. The vectors are those of the whole text evaluated at once within float32
rounding (max difference 9e-8); a 37-token digest with a 16-token fixed part costs ~0.6x the
whole text (docs/benchmarks.md, bench e2e).

Prefix cache: the fixed part of a prompt (a system prompt) is evaluated once; the KV cells
of its sequence are kept as bytes (``llama_state_seq_get_data``: about 23 KB a token for
this model; no logits, unlike ``Llama.save_state``) together with the logits of its last
token, in a small LRU keyed by the prefix text. Restoring them and evaluating the rest
gives bit-identical logits to evaluating everything at once, so cached and uncached scores
agree exactly and greedy text is the same as ``raw_generate``'s.

``raw_generate`` is the plain llama-cpp-python ``create_completion`` on the same context,
the baseline for overhead measurements; the Llama object is reset before each call so it
never reuses an earlier prompt (our own calls leave its KV cache in another state).

Prompt text (prefix and suffix) is tokenized with special tokens parsed, as
``create_completion`` does, so chat markers like ``<|im_end|>`` work; options and texts to
embed are tokenized as plain text.

A Model is not thread-safe: one thread (``agent.inference.worker``) owns it.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2
import llama_cpp
import numpy as np
import numpy.typing as npt

from agent.errors import AgentError
from agent.inference import chat, native
from agent.inference.buffers import Batch, Candidates, Logits

log = logging.getLogger(__name__)

Vector = npt.NDArray[np.float32]

OUTPUT_CHUNK = 16  # tokens per decode when every token's output is read (embed, options)
EMBED_PREFIXES = 8  # fixed parts of texts to embed kept (~23 KB a token: ~3 MB at most)
_USER_MARK = "\ue000user\ue000"  # private-use characters: never in a real template


@dataclass
class InferenceStats:
    """Counters since load; ``seconds`` is wall time spent inside inference calls."""

    evaluated_tokens: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    prefix_hits: int = 0
    prefix_misses: int = 0

    def tokens_per_second(self) -> float:
        tokens = self.evaluated_tokens + self.generated_tokens
        return tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _Prefix:
    tokens: tuple[int, ...]
    state: ctypes.Array[ctypes.c_uint8]  # KV cells of sequence 0
    logits: Logits | None  # of the last token; None for an empty prefix


@dataclass(frozen=True)
class _EmbedPrefix:
    tokens: tuple[int, ...]
    state: ctypes.Array[ctypes.c_uint8]  # KV cells of sequence 0
    total: npt.NDArray[np.float64]  # the tokens' final hidden states, summed


class Model:
    """A GGUF model loaded once; see the module docstring for how the work is shared."""

    def __init__(
        self,
        path: Path,
        *,
        threads: int,
        context: int,
        sha256: str,
        prefix_cache: int = 4,
        lora_path: Path | None = None,
    ) -> None:
        if threads < 1 or context < 16 or prefix_cache < 1:
            raise AgentError(
                f"bad model settings: threads={threads}, context={context}, "
                f"prefix_cache={prefix_cache}"
            )
        self.path = path
        self.name = path.name
        self.sha256 = sha256
        self.threads = threads
        self.context = context
        self.stats = InferenceStats()
        self._llm = native.load(path, threads=threads, context=context)
        native.trim()
        self.n_embd = int(self._llm.n_embd())
        self._n_vocab = int(self._llm.n_vocab())
        self._ctx = self._llm.ctx
        self._vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self._batch = Batch(min(native.BATCH, context))
        self._candidates = Candidates(self._n_vocab)
        self._prefixes: OrderedDict[str, _Prefix] = OrderedDict()
        self._prefix_cache = prefix_cache
        self._embed_prefixes: OrderedDict[tuple[Path | None, tuple[int, ...]], _EmbedPrefix] = (
            OrderedDict()
        )
        self._template: jinja2.Template | None = None
        self._adapters: dict[Path, Any] = {}
        self._adapter: Path | None = None
        self._closed = False
        if lora_path is not None:
            self.use_adapter(lora_path)
        log.info("loaded model %s (%d threads, context %d)", self.name, threads, context)

    # -- public API ---------------------------------------------------------------------

    def embed(self, text: str, fixed: str = "") -> Vector:
        """Mean of the final hidden states over the text's tokens, L2-normalised (float32);
        a text longer than the context is cut to its first ``context`` tokens. ``fixed`` is
        a leading part of ``text`` that recurs (a policy's input name and band): its KV cells
        and summed hidden states are kept, and only the rest is evaluated next time."""
        with self._timed():
            tokens = self._tokenize(text, special=False)[: self.context]
            if not tokens:
                raise AgentError("cannot embed an empty text")
            llama_cpp.llama_set_embeddings(self._ctx, True)
            try:
                head = self._embed_prefix(tokens, fixed)
                rest = tokens[len(head.tokens) :]
                total = head.total + self._sum_hidden_states(rest, len(head.tokens))
            finally:
                llama_cpp.llama_set_embeddings(self._ctx, False)
                self._clear()
            self.stats.evaluated_tokens += len(rest)
        mean = total / len(tokens)
        norm = float(np.linalg.norm(mean))
        return (mean / norm if norm > 0 else mean).astype(np.float32)

    def score(self, prefix: str, suffix: str, options: Sequence[str]) -> list[float]:
        """Total natural-log likelihood of each option's tokens right after prefix + suffix."""
        with self._timed():
            option_tokens = [self._tokenize(option, special=False) for option in options]
            longest = max((len(tokens) for tokens in option_tokens), default=0)
            n_past, logits = self._enter(prefix, suffix, reserve=longest)
            first = _log_softmax(logits)
            return [self._option_logprob(n_past, first, tokens) for tokens in option_tokens]

    def generate(
        self,
        prefix: str,
        suffix: str,
        *,
        grammar: str | None = None,
        max_tokens: int = 64,
        stop: Sequence[str] = (),
    ) -> str:
        """Greedy continuation of prefix + suffix, optionally bound by a GBNF grammar."""
        _check_max_tokens(max_tokens)
        with self._timed():
            chain = self._new_chain(grammar)
            try:
                n_past, logits = self._enter(prefix, suffix, reserve=1)
                return self._complete(chain, n_past, logits, max_tokens, stop)
            finally:
                llama_cpp.llama_sampler_free(chain)

    def raw_generate(
        self,
        prompt: str,
        *,
        grammar: str | None = None,
        max_tokens: int = 64,
        stop: Sequence[str] = (),
    ) -> str:
        """The plain llama-cpp-python completion with the same settings and no cache."""
        _check_max_tokens(max_tokens)
        with self._timed():
            llama_cpp.llama_sampler_free(self._new_chain(grammar))  # a bad grammar fails here
            self._llm.reset()  # forget the last prompt: no prefix reuse in the baseline
            try:
                result = self._llm.create_completion(
                    prompt,
                    max_tokens=max_tokens,
                    temperature=0.0,
                    stop=_stop_list(stop),
                    grammar=None
                    if grammar is None
                    else llama_cpp.llama_grammar.LlamaGrammar.from_string(grammar, verbose=False),
                )
            except (ValueError, RuntimeError) as exc:
                raise AgentError(f"completion failed: {exc}") from None
            self.stats.evaluated_tokens += int(result["usage"]["prompt_tokens"])
            self.stats.generated_tokens += int(result["usage"]["completion_tokens"])
            return str(result["choices"][0]["text"])

    def chat(self, system: str, user: str) -> tuple[str, str]:
        """The model's chat prompt for one system and one user message, split where the user
        text starts: (fixed prefix worth caching, the rest up to the assistant's turn)."""
        self._check_open()
        marked = self._render_chat(system, _USER_MARK)
        if marked.count(_USER_MARK) != 1:
            raise AgentError(f"the chat template of {self.name} does not show the user text once")
        head, _, tail = marked.partition(_USER_MARK)
        if self._render_chat(system, user) != head + user + tail:
            raise AgentError(f"the chat template of {self.name} rewrites the user text")
        return head, user + tail

    def tokens_per_second(self) -> float:
        return self.stats.tokens_per_second()

    def set_threads(self, threads: int) -> None:
        """Change the thread count, e.g. when other work has taken or freed cores."""
        if threads < 1:
            raise AgentError(f"model threads must be at least 1, got {threads}")
        self._check_open()
        llama_cpp.llama_set_n_threads(self._ctx, threads, threads)
        self.threads = threads

    def use_adapter(self, path: Path | None) -> None:
        """Run the following calls with the LoRA adapter GGUF at ``path`` on top of the base
        weights (loaded once, then kept), or on the base weights alone with None."""
        self._check_open()
        if path == self._adapter:
            return
        if path is None:
            code = llama_cpp.llama_set_adapters_lora(self._ctx, None, 0, None)
        else:
            lora = self._adapters.get(path)
            if lora is None:
                lora = self._load_adapter(path)
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(lora)
            scales = (ctypes.c_float * 1)(1.0)
            code = llama_cpp.llama_set_adapters_lora(self._ctx, adapters, 1, scales)
        if code != 0:
            raise AgentError(f"cannot apply LoRA adapter {path}: {native.detail(str(code))}")
        self._adapter = path

    @contextmanager
    def adapter(self, path: Path | None) -> Iterator[Model]:
        """``use_adapter(path)`` for the ``with`` block, then back to what was used before."""
        before = self._adapter
        self.use_adapter(path)
        try:
            yield self
        finally:
            if not self._closed:
                self.use_adapter(before)

    def clear_prefix_cache(self) -> None:
        self._prefixes.clear()
        self._embed_prefixes.clear()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._prefixes.clear()
        self._embed_prefixes.clear()
        if self._adapters:  # detached first: the context must not point at a freed adapter
            llama_cpp.llama_set_adapters_lora(self._ctx, None, 0, None)
            for lora in self._adapters.values():
                llama_cpp.llama_adapter_lora_free(lora)
            self._adapters.clear()
        self._batch.close()
        self._llm.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- evaluation ---------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise AgentError(f"model {self.name} is closed")

    @contextmanager
    def _timed(self) -> Iterator[None]:
        self._check_open()
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stats.seconds += time.perf_counter() - started

    def _enter(self, prefix: str, suffix: str, reserve: int) -> tuple[int, Logits]:
        """Put prefix + suffix in the context: the position after them and the logits there."""
        tail = self._tokenize(suffix, special=True)
        head = self._restore_prefix(prefix, extra=len(tail) + reserve)
        if tail:
            self._eval(tail, len(head.tokens))
            return len(head.tokens) + len(tail), self._last_logits()
        if head.logits is None:
            raise AgentError("nothing to continue: the prompt is empty")
        return len(head.tokens), head.logits

    def _restore_prefix(self, text: str, extra: int) -> _Prefix:
        self._clear()
        key = f"{self._adapter}\0{text}"  # the KV cells depend on the adapter in use
        entry = self._prefixes.get(key)
        if entry is not None:
            self._fit(len(entry.tokens) + extra)
            self._prefixes.move_to_end(key)
            self.stats.prefix_hits += 1
            self._set_state(entry.state)
            return entry
        tokens = self._tokenize(text, special=True, bos=True)
        self._fit(len(tokens) + extra)
        if not tokens:
            return _Prefix((), (ctypes.c_uint8 * 0)(), None)
        self.stats.prefix_misses += 1
        self._eval(tokens, 0)
        entry = _Prefix(tuple(tokens), self._get_state(), self._last_logits())
        self._prefixes[key] = entry
        while len(self._prefixes) > self._prefix_cache:
            self._prefixes.popitem(last=False)
        return entry

    def _option_logprob(
        self, n_past: int, first: npt.NDArray[np.float64], tokens: list[int]
    ) -> float:
        if not tokens:
            return 0.0
        total = float(first[tokens[0]])
        inputs, targets = tokens[:-1], tokens[1:]
        for offset in range(0, len(inputs), OUTPUT_CHUNK):
            chunk = inputs[offset : offset + OUTPUT_CHUNK]
            self._run(chunk, n_past + offset, all_outputs=True)
            rows = _log_softmax(self._rows(llama_cpp.llama_get_logits(self._ctx), len(chunk)))
            wanted = targets[offset : offset + len(chunk)]
            total += float(rows[np.arange(len(chunk)), wanted].sum())
        self.stats.evaluated_tokens += len(inputs)
        llama_cpp.llama_memory_seq_rm(self._memory, 0, n_past, -1)
        return total

    def _complete(
        self, chain: Any, n_past: int, logits: Logits, max_tokens: int, stop: Sequence[str]
    ) -> str:
        """Sample greedily until end of generation, a stop string or the token limit; stop
        strings and their bounds behave as in llama-cpp-python's create_completion."""
        stops = [s.encode("utf-8") for s in _stop_list(stop)]
        limit = min(max_tokens, self.context - n_past)
        tokens: list[int] = []
        text = b""
        while len(tokens) < limit:
            token = self._candidates.pick(chain, logits)
            if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                break
            tokens.append(token)
            text = bytes(self._llm.detokenize(tokens))
            found = [s for s in stops if s in text]
            if found:
                text = text[: text.index(found[0])]
                break
            if len(tokens) < limit:
                self._run([token], n_past + len(tokens) - 1, all_outputs=False)
                logits = self._last_logits()
        self.stats.generated_tokens += len(tokens)
        return text.decode("utf-8", errors="ignore")

    def _embed_prefix(self, tokens: list[int], fixed: str) -> _EmbedPrefix:
        """The context holding ``fixed`` (restored or evaluated), or empty when ``fixed``
        does not tokenize as a leading part of ``tokens`` (then nothing is reused)."""
        self._clear()
        head = self._tokenize(fixed, special=False) if fixed else []
        if not head or len(head) > len(tokens) or tokens[: len(head)] != head:
            return _EmbedPrefix((), (ctypes.c_uint8 * 0)(), np.zeros(self.n_embd))
        key = (self._adapter, tuple(head))
        entry = self._embed_prefixes.get(key)
        if entry is not None:
            self._embed_prefixes.move_to_end(key)
            self.stats.prefix_hits += 1
            self._set_state(entry.state)
            return entry
        self.stats.prefix_misses += 1
        total = self._sum_hidden_states(head, 0)
        self.stats.evaluated_tokens += len(head)
        entry = _EmbedPrefix(tuple(head), self._get_state(), total)
        self._embed_prefixes[key] = entry
        while len(self._embed_prefixes) > EMBED_PREFIXES:
            self._embed_prefixes.popitem(last=False)
        return entry

    def _sum_hidden_states(self, tokens: list[int], start: int) -> npt.NDArray[np.float64]:
        """Evaluate ``tokens`` from position ``start`` in embedding mode: their summed final
        hidden states (the context already holds the KV cells of the positions before)."""
        total = np.zeros(self.n_embd, dtype=np.float64)
        for offset in range(0, len(tokens), OUTPUT_CHUNK):
            chunk = tokens[offset : offset + OUTPUT_CHUNK]
            self._run(chunk, start + offset, all_outputs=True)
            hidden = llama_cpp.llama_get_embeddings(self._ctx)
            total += self._rows(hidden, len(chunk), self.n_embd).sum(axis=0)
        return total

    def _eval(self, tokens: Sequence[int], start: int) -> None:
        for offset in range(0, len(tokens), self._batch.capacity):
            chunk = tokens[offset : offset + self._batch.capacity]
            self._run(chunk, start + offset, all_outputs=False)
        self.stats.evaluated_tokens += len(tokens)

    def _run(self, tokens: Sequence[int], start: int, *, all_outputs: bool) -> None:
        batch = self._batch.fill(tokens, start, all_outputs=all_outputs)
        code = llama_cpp.llama_decode(self._ctx, batch)
        if code != 0:
            raise AgentError(f"llama_decode failed with code {code}: {native.detail('')}")

    def _load_adapter(self, path: Path) -> Any:
        if not path.is_file():
            raise AgentError(f"cannot load LoRA adapter {path}: no such file")
        native.forget_errors()
        lora = llama_cpp.llama_adapter_lora_init(self._llm.model, str(path).encode("utf-8"))
        if not lora:
            raise AgentError(f"cannot load LoRA adapter {path}: {native.detail('not an adapter')}")
        self._adapters[path] = lora
        log.info("loaded LoRA adapter %s", path.name)
        return lora

    def _new_chain(self, grammar: str | None) -> Any:
        """A greedy sampler chain, behind the grammar when one is given."""
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        if grammar is not None:
            native.forget_errors()
            rule = llama_cpp.llama_sampler_init_grammar(
                self._vocab, grammar.encode("utf-8"), b"root"
            )
            if not rule:
                llama_cpp.llama_sampler_free(chain)
                raise AgentError(f"invalid grammar: {native.detail('it does not parse')}")
            llama_cpp.llama_sampler_chain_add(chain, rule)
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        return chain

    # -- context plumbing ---------------------------------------------------------------

    def _clear(self) -> None:
        llama_cpp.llama_memory_clear(self._memory, False)

    def _get_state(self) -> ctypes.Array[ctypes.c_uint8]:
        size = int(llama_cpp.llama_state_seq_get_size(self._ctx, 0))
        state = (ctypes.c_uint8 * size)()
        if llama_cpp.llama_state_seq_get_data(self._ctx, state, size, 0) != size:
            raise AgentError("cannot copy the prefix KV cache")
        return state

    def _set_state(self, state: ctypes.Array[ctypes.c_uint8]) -> None:
        if len(state) and not llama_cpp.llama_state_seq_set_data(self._ctx, state, len(state), 0):
            raise AgentError(f"cannot restore the prefix KV cache: {native.detail('')}")

    def _fit(self, n_tokens: int) -> None:
        if n_tokens > self.context:
            raise AgentError(
                f"{n_tokens} tokens do not fit the model context of {self.context} tokens"
            )

    def _tokenize(self, text: str, *, special: bool, bos: bool = False) -> list[int]:
        add_bos = bos and self._add_bos
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special))

    def _last_logits(self) -> Logits:
        row: Logits = self._rows(llama_cpp.llama_get_logits_ith(self._ctx, -1), 1)[0]
        return row

    def _rows(self, pointer: Any, rows: int, width: int | None = None) -> Logits:
        if not pointer:
            raise AgentError("llama.cpp returned no outputs")
        shape = (rows, self._n_vocab if width is None else width)
        values: Logits = np.ctypeslib.as_array(pointer, shape=shape).copy()
        return values

    def _render_chat(self, system: str, user: str) -> str:
        if self._template is None:
            self._template = chat.compile_template(self._llm.metadata, self.name)
        return chat.render(self._template, self._vocab, system, user, self.name)


def _stop_list(stop: str | Sequence[str]) -> list[str]:
    return [stop] if isinstance(stop, str) else list(stop)


def _check_max_tokens(max_tokens: int) -> None:
    if max_tokens < 1:
        raise AgentError(f"max_tokens must be at least 1, got {max_tokens}")


def _log_softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    shifted = logits.astype(np.float64)
    shifted -= shifted.max(axis=-1, keepdims=True)
    result: npt.NDArray[np.float64] = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return result
