"""``edge-agent bench model``: load time, speed and memory of each model file, side by side.

Every file is loaded in this process one after the other with the same threads and context,
and measured the same way: wall time of the load; prompt processing (tokens per second over
a ~100-token prompt, evaluated once, no prefix cache); generation (greedy, up to ``tokens``
new tokens); and the growth of resident memory from before the load to after generating
(llama.cpp maps the file, so this is what the model really costs the device). The bundled
model is always measured first and every figure is also printed as a ratio to it.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.errors import AgentError
from agent.inference.locate import locate, sha256_of
from agent.inference.model import Model
from agent.inference.speed import generation_speed, prompt_speed, resident_mb

Echo = Callable[[str], None]
BASELINE = "bundled:smollm2-135m"


@dataclass(frozen=True)
class Result:
    path: Path
    size_mb: float
    load_s: float
    prompt_tps: float
    gen_tps: float
    generated: int
    rss_mb: float | None


def run_bench(
    paths: Sequence[Path],
    echo: Echo,
    *,
    threads: int = 1,
    context: int = 512,
    tokens: int = 32,
) -> list[Result]:
    """Measure the bundled model and then each of ``paths``; print a table; return it."""
    baseline = locate(BASELINE).path
    files = [baseline, *(p for p in map(Path, paths) if p.resolve() != baseline.resolve())]
    for path in files:
        if not path.is_file():
            raise AgentError(f"model file {path} does not exist")
    echo(f"{len(files)} model(s), {threads} thread(s), context {context}, {tokens} new tokens")
    results = [measure(path, threads=threads, context=context, tokens=tokens) for path in files]
    for line in table(results):
        echo(line)
    return results


def measure(path: Path, *, threads: int, context: int, tokens: int) -> Result:
    gc.collect()
    before = resident_mb()
    started = time.perf_counter()
    with Model(path, threads=threads, context=context, sha256=sha256_of(path)) as model:
        load_s = time.perf_counter() - started
        prompt_tps, _ = prompt_speed(model)
        gen_tps, generated = generation_speed(model, tokens)
        after = resident_mb()
    return Result(
        path,
        path.stat().st_size / 1e6,
        load_s,
        prompt_tps,
        gen_tps,
        generated,
        None if before is None or after is None else after - before,
    )


def table(results: list[Result]) -> list[str]:
    base = results[0]
    lines = [
        f"{'model':<40} {'MB':>7} {'load s':>13} {'prompt tok/s':>16} "
        f"{'gen tok/s':>16} {'RSS +MB':>14}"
    ]
    for r in results:
        lines.append(
            f"{r.path.name[:40]:<40} {r.size_mb:7.1f} "
            f"{_cell(r.load_s, base.load_s, '.2f'):>13} "
            f"{_cell(r.prompt_tps, base.prompt_tps, '.0f'):>16} "
            f"{_cell(r.gen_tps, base.gen_tps, '.1f'):>16} "
            f"{_cell(r.rss_mb, base.rss_mb, '.0f'):>14}"
        )
    short = [r.path.name for r in results if r.generated < results[0].generated]
    lines.append(f"ratios (x) are against {base.path.name}, the bundled model")
    if short:
        lines.append(f"stopped early (end of text), fewer tokens timed: {', '.join(short)}")
    return lines


def _cell(value: float | None, base: float | None, spec: str) -> str:
    if value is None:
        return "n/a"
    ratio = f" ({value / base:.2f}x)" if base else ""
    return f"{value:{spec}}{ratio}"
