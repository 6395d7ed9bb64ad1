"""The out-of-band measurement of bench diagnose: the same seeded fault trace driven by a rules
policy with and without the pause; the pause happens only with diagnosis, and the table has a
row per pausing sensor fault."""

from __future__ import annotations

from agent.bench.outofband import KINDS, MODES, Run, Table, run_trace


def test_a_stuck_thermometer_pauses_the_policy_only_with_diagnosis() -> None:
    runs = {mode: run_trace("stuck", 901_000, 3.0, mode) for mode in MODES}
    assert runs["without"].paused == 0
    # stuck for 3 h: paused for most of it (found within minutes, cleared after three checks)
    assert 120 <= runs["off"].paused <= 185
    assert runs["hold"].paused == runs["off"].paused  # the same detectors on the same trace
    for run in runs.values():
        assert 0 <= run.out_of_band <= 180


def test_the_table_has_a_row_per_pausing_fault_and_the_totals() -> None:
    table = Table()
    for kind in KINDS:
        for i, mode in enumerate(MODES):
            table.add(kind, mode, Run(out_of_band=10.0 * i, paused=5.0))
    lines = table.lines()
    assert [line.split()[0] for line in lines[1:-1]] == list(KINDS)
    assert lines[1].split()[1:] == ["1", "0", "10", "20", "5"]
    assert lines[-1] == ("total minutes out of band: without 0, pause/off 50, "
                         "pause/hold 100")
