"""The diagnose engines' labelled digests, from simulated traces with known faults.

Each trace (firmware_sim.traces) is replayed through a :class:`Diagnoser` as the agent would
see it; at every check each series' digest is recorded with its label: the injected fault on
the injected series once the fault can show (``VISIBLE``), "ok" everywhere else, nothing in
the minutes when it is starting or ending (neither label would be true). Next to it, what the
statistical detectors said at that check, so the gate can compare both on the same windows.

Two sets, never sharing a seed or a fault size: ``train`` (seeds from ``TRAIN_SEED``, the
training sizes of ``SIZES``) and ``gate`` (seeds from ``GATE_SEED``, the held-out sizes); the
benchmark's own traces use a third range (from 900000) and the held-out sizes. Written as JSON
lines, one per (trace, digest, label, statistical verdict) with its count, into
``config/diagnose/`` where the agent reads them (the agent never runs the simulator).

    python -m agent.bench.diagcorpus [--seeds 3] [--out config/diagnose]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from agent.bench.diagnose import CHECK_EVERY, LAYOUT, _feed
from agent.diagnosis.engine import OK_CLASS, SENSOR_FAULTS
from agent.diagnosis.fleet import Diagnoser
from agent.diagnosis.verdict import Finding, worst
from firmware_sim.traces import SIZES, Label, trace

TRAIN_SEED, GATE_SEED = 100_000, 500_000
SETTLE = 600.0  # seconds after a fault ends before its series counts as ok again
DRIFT_TOLERANCE = 1.5  # K, as the temperature detector's


def visible_after(kind: str, size: float) -> float:
    """Seconds from a fault's onset until a window can show it."""
    if kind == "drift":
        return 3600 * DRIFT_TOLERANCE / max(size, 0.1)
    return {"silent": 480, "stuck": 600, "spiky": 2700, "noisy": 1200, "out_of_range": 600,
            "wrong_unit": 180}[kind]


def label_at(label: Label | None, key: str, t: float, size: float) -> str | None:
    if label is None or key != label.key:
        return OK_CLASS
    if t < label.onset:
        return OK_CLASS
    if label.kind in ("silent", "stuck") and t >= label.end:
        return OK_CLASS if t >= label.end + SETTLE else None
    return label.kind if t >= label.onset + visible_after(label.kind, size) else None


def verdict(findings: list[Finding]) -> str:
    """What the statistical detectors say of one window: their worst fault, or ok."""
    top = worst(findings)
    return OK_CLASS if top is None or top.score < 1.0 else top.fault


def windows(kind: str | None, seed: int, size: float, hours: float = 24.0
            ) -> Iterator[tuple[str, str, str, str]]:
    """(quantity, digest, label, statistical verdict) of every series at every check."""
    label, events = trace(kind, seed, size, hours=hours)
    diag: Diagnoser | None = None
    next_check = 0.0
    for event in events:
        if diag is None:
            diag, next_check = Diagnoser(LAYOUT, event.t), event.t + CHECK_EVERY
        while event.t >= next_check:
            yield from _check(diag, label, next_check, size)
            next_check += CHECK_EVERY
        _feed(diag, event.what, event.t, event.data)


def _check(diag: Diagnoser, label: Label | None, t: float, size: float
           ) -> Iterator[tuple[str, str, str, str]]:
    diag.check(t)
    for key, findings in diag.found.items():
        wanted = label_at(label, key, t, size)
        if wanted is not None:
            yield key.split("/")[1], diag.digests[key], wanted, verdict(findings)


def build(seeds: int, first: int, which: int, hours: float = 24.0) -> Iterator[dict[str, object]]:
    """Rows of one set: ``which`` 0 takes the training sizes, 1 the held-out ones."""
    plan: list[tuple[str | None, int, float]] = [(None, first + i, 0.0) for i in range(2 * seeds)]
    for n, fault in enumerate(SENSOR_FAULTS):
        for j, size in enumerate(SIZES[fault][which]):
            plan += [(fault, first + 1000 * (n + 1) + 10 * j + i, size) for i in range(seeds)]
    for kind, seed, size in plan:
        counts = Counter(windows(kind, seed, size, hours))
        for (quantity, text, lb, stat), n in sorted(counts.items()):
            yield {"kind": kind, "seed": seed, "size": size, "quantity": quantity,
                   "digest": text, "label": lb, "statistical": stat, "count": n}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("config/diagnose"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, first, which in (("train", TRAIN_SEED, 0), ("gate", GATE_SEED, 1)):
        path = args.out / f"{name}.jsonl"
        with path.open("w") as out:
            for row in build(args.seeds, first, which):
                out.write(json.dumps(row, sort_keys=True) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
