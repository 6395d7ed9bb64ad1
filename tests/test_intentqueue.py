"""The intent queue's admission: per-requester rate, queue bound, size cap, reply budget (an
injected clock; the worker is not started, so nothing is answered, only admitted or dropped)."""

from __future__ import annotations

import json
from typing import Any

from agent.service.intentqueue import MAX_REQUEST_BYTES, REPLIES_PER_SECOND, IntentQueue
from tests.helpers import Clock


def not_run(payload: bytes) -> dict[str, Any]:
    raise AssertionError("the worker is not started in these tests")


def request(rid: object, text: str = "turn off the living room ac") -> bytes:
    return json.dumps({"id": rid, "text": text}).encode()


def make(size: int = 100, per_minute: int = 5) -> tuple[IntentQueue, list[dict[str, Any]], Clock]:
    replies: list[dict[str, Any]] = []
    clock = Clock(100.0)
    return IntentQueue(not_run, replies.append, size=size, per_minute=per_minute,
                       clock=clock), replies, clock


def test_each_requester_has_its_own_rate() -> None:
    queue, replies, clock = make(per_minute=5)
    assert [queue.submit(request("a")) for _ in range(6)] == [True] * 5 + [False]
    assert replies == [{"id": "a", "ok": False, "command": None,
                        "error": "busy: over 5 requests a minute"}]
    assert queue.submit(request("b"))  # another requester is not held back by a
    clock.now += 12.0  # one request's worth of refill at 5 a minute
    assert queue.submit(request("a")) and not queue.submit(request("a"))
    assert queue.status() == {"queued": 7, "accepted": 7, "dropped_rate_limited": 2}


def test_what_does_not_fit_in_the_queue_is_dropped() -> None:
    queue, replies, _ = make(size=2)
    assert [queue.submit(request(f"r{i}")) for i in range(3)] == [True, True, False]
    assert replies[-1]["id"] == "r2" and replies[-1]["error"].startswith("busy")
    assert queue.status()["dropped_queue_full"] == 1


def test_oversized_and_unreadable_requests() -> None:
    queue, replies, _ = make(per_minute=1)
    assert not queue.submit(b"x" * (MAX_REQUEST_BYTES + 1))
    assert replies[-1]["id"] is None
    assert queue.submit(b"\xff not json")  # queued: the worker answers it "bad request"
    assert not queue.submit(b"[1, 2")  # unreadable requests share one requester's rate
    assert not queue.submit(b"[" * 4000 + b"]" * 4000)  # nested past the stack: no crash
    assert queue.status()["dropped_too_large"] == 1


def test_refusals_are_answered_within_a_budget() -> None:
    queue, replies, clock = make(per_minute=1)
    for i in range(100):
        queue.submit(request("flooder", f"turn off the light {i}"))
    assert queue.status()["dropped_rate_limited"] == 99
    assert len(replies) == REPLIES_PER_SECOND
    clock.now += 1.0
    queue.submit(request("flooder"))
    assert len(replies) == REPLIES_PER_SECOND + 1
