"""Messages in parts: split, put together in any order, corrupt or partial ones refused."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest

from agent.errors import AgentError
from agent.peers import fragments


def sent_by_publish(payload: bytes, *, retain: bool, limit: int) -> list[tuple[str, bytes, bool]]:
    out: list[tuple[str, bytes, bool]] = []

    def send(topic: str, data: bytes, qos: int = 0, retain: bool = False) -> Any:
        assert qos == 1
        out.append((topic, data, retain))

    n = fragments.publish(send, "edge/x/round", payload, retain=retain, limit=limit)
    assert n == len([t for t, _, _ in out if "/part/" in t]) or n == 1
    return out


def test_a_short_message_goes_whole() -> None:
    assert sent_by_publish(b"hello", retain=True, limit=100) == [("edge/x/round", b"hello", True)]


def test_a_long_message_goes_in_parts_and_comes_back_in_any_order() -> None:
    payload = random.Random(1).randbytes(10_000)
    sent = sent_by_publish(payload, retain=True, limit=1000)
    parts = [(t, d) for t, d, _ in sent if "/part/" in t]
    room = 1000 - fragments.HEADER.size
    assert len(parts) == -(-10_000 // room) and all(len(d) <= 1000 for _, d in parts)
    assert sent[-1] == ("edge/x/round", b"", True)  # the stale whole message is cleared
    random.Random(2).shuffle(parts)
    r = fragments.Reassembler()
    results = [r.add(t, d) for t, d in parts]
    assert results[:-1] == [None] * (len(parts) - 1)
    assert results[-1] == payload and r.pending == 0


def test_topics() -> None:
    assert fragments.base_topic("a/b/part/3") == "a/b"
    assert fragments.base_topic("a/b/part/x") is None
    assert fragments.base_topic("a/b") is None
    assert fragments.part_filter("a/update/+") == "a/update/+/part/+"


@pytest.mark.parametrize(
    ("mangle", "error"),
    [
        (lambda d: d[:10], "shorter than its header"),
        (lambda d: b"XXXX" + d[4:], "bad header"),
    ],
)
def test_malformed_parts_are_refused(mangle: Any, error: str) -> None:
    part = fragments.split(b"x" * 500, 200)[0]
    with pytest.raises(AgentError, match=error):
        fragments.Reassembler().add("t/part/0", mangle(part))


def test_a_part_on_the_wrong_index_topic_is_refused() -> None:
    part = fragments.split(b"x" * 500, 200)[1]
    with pytest.raises(AgentError, match="part 1 arrived on t/part/0"):
        fragments.Reassembler().add("t/part/0", part)


def test_a_corrupted_part_fails_the_digest_and_nothing_is_handed_on() -> None:
    parts = fragments.split(bytes(range(256)) * 4, 300)
    bad = bytearray(parts[1])
    bad[-1] ^= 1
    r = fragments.Reassembler()
    r.add("t/part/0", parts[0])
    r.add("t/part/1", bytes(bad))
    with pytest.raises(AgentError, match="digest does not match"):
        for i in range(2, len(parts)):
            r.add(f"t/part/{i}", parts[i])
    assert r.pending == 0


def test_incomplete_messages_are_dropped_oldest_first() -> None:
    r = fragments.Reassembler(max_pending=2)
    for n in range(4):
        first = fragments.split(n.to_bytes(1, "big") * 1000, 200)[0]
        assert r.add("t/part/0", first) is None
    assert r.pending == 2 and r.dropped == 2


def test_the_digest_covers_the_whole_message() -> None:
    payload = b"abc" * 1000
    part = fragments.split(payload, 500)[0]
    assert part[4:36] == hashlib.sha256(payload).digest()


def test_a_part_size_with_no_room_is_refused() -> None:
    with pytest.raises(AgentError, match="no room"):
        fragments.split(b"x", fragments.HEADER.size)


def test_one_pending_message_larger_than_the_cap_is_dropped_and_counted() -> None:
    # the attack: one message announces many parts and never completes; every part is kept
    r = fragments.Reassembler(max_bytes=10_000)
    parts = fragments.split(b"y" * 100_000, 1000)
    for i, part in enumerate(parts[:-1]):
        assert r.add(f"t/part/{i}", part) is None
    assert (r.pending, r.dropped) == (0, 1), "one message over the cap is held, not dropped"
    assert r.held_bytes == 0


def test_a_message_that_grows_past_the_cap_is_dropped_when_it_does() -> None:
    r = fragments.Reassembler(max_bytes=10_000)
    parts = fragments.split(b"v" * 100_000, 1000)
    assert r.add(f"t/part/{len(parts) - 1}", parts[-1]) is None  # the short last part first
    for i in range(20):  # the last part tells nothing of the total: the held bytes add up
        r.add(f"t/part/{i}", parts[i])
    assert (r.pending, r.dropped, r.held_bytes) == (0, 1, 0)


def test_a_message_that_announces_more_than_the_cap_is_refused_at_its_first_part() -> None:
    r = fragments.Reassembler(max_bytes=10_000)
    parts = fragments.split(b"z" * 100_000, 1000)
    assert r.add("t/part/0", parts[0]) is None
    assert r.pending == 0 and r.dropped == 1


def test_a_message_inside_the_cap_still_comes_together() -> None:
    r = fragments.Reassembler(max_bytes=10_000)
    payload = b"w" * 9_000
    parts = fragments.split(payload, 1000)
    results = [r.add(f"t/part/{i}", p) for i, p in enumerate(parts)]
    assert results[-1] == payload and r.dropped == 0 and r.held_bytes == 0
