"""Error events at a bounded rate (SPEC 2): a flood of bad messages gives a bounded flood of
events, and an event that says how many were left out."""

from __future__ import annotations

import json

from agent.service.errorevents import ErrorEvents
from tests.helpers import Clock


def make(clock: Clock) -> tuple[ErrorEvents, list[dict[str, object]]]:
    sent: list[dict[str, object]] = []
    events = ErrorEvents("edge/agents/a/errors", lambda t, p: sent.append(json.loads(p)),
                         rate=10, burst=5, clock=clock, monotonic=clock)
    return events, sent


def test_a_burst_goes_out_then_the_rate_holds() -> None:
    clock = Clock(100.0)
    events, sent = make(clock)
    passed = [events.report("edge/sensors/d/q", "bad", "x") for _ in range(1000)]
    assert passed.count(True) == 5 and len(sent) == 5
    assert events.suppressed == 995
    clock.now += 1.0  # ten more tokens
    assert events.report("edge/sensors/d/q", "bad again", "y")
    note, event = sent[-2:]
    assert "995 more error events were left out" in str(note["error"])
    assert (event["error"], event["payload"], event["topic"]) == ("bad again", "y",
                                                                  "edge/sensors/d/q")
    assert set(event) == {"ts", "topic", "error", "payload"}


def test_a_steady_trickle_is_never_held_back() -> None:
    clock = Clock(100.0)
    events, sent = make(clock)
    for _ in range(100):
        clock.now += 0.2
        assert events.report("t", "bad", "")
    assert len(sent) == 100 and events.suppressed_total == 0
