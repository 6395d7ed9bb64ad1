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
            ) -> Iterator[tuple[str, float, str, str | None, str]]:
    """(series, time, digest, label or None, statistical verdict) of every series at every
    check."""
    label, events = trace(kind, seed, size, hours=hours)
    diag: Diagnoser | None = None
    next_check = 0.0
    for event in events:
        if diag is None:
            diag, next_check = Diagnoser(LAYOUT, event.t), event.t + CHECK_EVERY
        while event.t >= next_check:
            diag.check(next_check)
            for key, findings in diag.found.items():
                yield (key, next_check, diag.digests[key], label_at(label, key, next_check, size),
                       verdict(findings))
            next_check += CHECK_EVERY
        _feed(diag, event.what, event.t, event.data)


def plan(seeds: int, first: int, which: int) -> list[tuple[str | None, int, float]]:
    """The traces of one set: ``which`` 0 takes the training sizes, 1 the held-out ones."""
    out: list[tuple[str | None, int, float]] = [(None, first + i, 0.0) for i in range(2 * seeds)]
    for n, fault in enumerate(SENSOR_FAULTS):
        for j, size in enumerate(SIZES[fault][which]):
            out += [(fault, first + 1000 * (n + 1) + 10 * j + i, size) for i in range(seeds)]
    return out


def build(traces: list[tuple[str | None, int, float]], hours: float = 24.0,
          sequences: list[dict[str, object]] | None = None) -> Iterator[dict[str, object]]:
    """The rows of a set of traces; with ``sequences``, also every series of a quantity with a
    fault, check by check (run-length coded), for the gate's trace-level figures."""
    for kind, seed, size in traces:
        counts: Counter[tuple[str, str, str, str]] = Counter()
        runs: dict[str, list[list[object]]] = {}
        start: dict[str, float] = {}
        for key, t, text, lb, stat in windows(kind, seed, size, hours):
            if lb is not None:
                counts[(key.split("/")[1], text, lb, stat)] += 1
            if sequences is not None and key.endswith("/temperature"):
                start.setdefault(key, t)
                series = runs.setdefault(key, [])
                if series and series[-1][1:] == [text, stat]:
                    series[-1][0] = int(str(series[-1][0])) + 1
                else:
                    series.append([1, text, stat])
        for (quantity, text, lb, stat), n in sorted(counts.items()):
            yield {"kind": kind, "seed": seed, "size": size, "quantity": quantity,
                   "digest": text, "label": lb, "statistical": stat, "count": n}
        if sequences is not None:
            found, _ = trace(kind, seed, size, hours=hours)  # its label only
            fault = {"fault_key": None, "onset": None, "end": None} if found is None else {
                "fault_key": found.key, "onset": found.onset, "end": found.end}
            for key, series in runs.items():
                sequences.append({"kind": kind, "seed": seed, "size": size, "key": key,
                                  "start": start[key], "runs": series, **fault})


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("config/diagnose"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, first, which in (("train", TRAIN_SEED, 0), ("gate", GATE_SEED, 1)):
        path = args.out / f"{name}.jsonl"
        sequences: list[dict[str, object]] | None = [] if name == "gate" else None
        with path.open("w") as out:
            for row in build(plan(args.seeds, first, which), sequences=sequences):
                out.write(json.dumps(row, sort_keys=True) + "\n")
        print(f"wrote {path}")
        if sequences is not None:
            write_sequences(args.out / f"{name}-sequences.json", sequences)


def write_sequences(path: Path, sequences: list[dict[str, object]]) -> None:
    """The series' checks, each digest written once (an index into ``digests``)."""
    digests: dict[str, int] = {}
    for seq in sequences:
        runs = seq["runs"]
        assert isinstance(runs, list)
        seq["runs"] = [[n, digests.setdefault(text, len(digests)), stat] for n, text, stat in runs]
    path.write_text(json.dumps({"check_every": CHECK_EVERY, "digests": list(digests),
                                "series": sequences}, separators=(",", ":")))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
