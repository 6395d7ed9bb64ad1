"""Locks and valves (actuators with ``confirm``) act on an intent only after a confirmation
round-trip: the first reply carries a one-time token, and only a second request from the same
requester id carrying it, before it expires, acts; a replayed, foreign, wrong or expired token
is refused. The token book is tested on an injected clock, the flow on a real broker."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.broker import Mosquitto
from agent.policy.confirm import Confirmations
from agent.policy.safety import Proposal
from agent.policy.signing import load_key, verify
from tests.conftest import AgentProcess, Collector, wait_for
from tests.helpers import Clock
from tests.intents_env import (
    LOCK,
    REPLY,
    SET,
    STATUS,
    VALVE,
    ask,
    home_config,
    reply,
    start,
    warm_up,
)

UNLOCK = Proposal("entrance", "front-door", "lock", "unlock", None, "intent")
OPEN = Proposal("garden", "garden-valve", "valve", "open", None, "intent")


def test_a_token_confirms_its_command_once() -> None:
    book = Confirmations(30.0, Clock(1_764_370_000.0))
    pending = book.issue('"alice"', UNLOCK, "unlock the front door")
    confirmed = book.redeem('"alice"', pending.token)
    assert not isinstance(confirmed, str) and confirmed.proposal == UNLOCK
    assert "already used" in str(book.redeem('"alice"', pending.token))


def test_an_expired_token_is_refused() -> None:
    clock = Clock(1_764_370_000.0)
    book = Confirmations(30.0, clock)
    pending = book.issue('"alice"', UNLOCK, "unlock the front door")
    clock.now += 30.5
    assert "expired" in str(book.redeem('"alice"', pending.token))
    assert len(book) == 0


def test_a_token_is_bound_to_its_requester_and_spent_by_a_wrong_use() -> None:
    book = Confirmations(30.0, Clock(1_764_370_000.0))
    pending = book.issue('"alice"', OPEN, "open the garden valve")
    assert "another requester" in str(book.redeem('"mallory"', pending.token))
    assert "already used" in str(book.redeem('"alice"', pending.token))


def test_a_token_is_bound_to_the_words_it_was_issued_for() -> None:
    book = Confirmations(30.0, Clock(1_764_370_000.0))
    pending = book.issue('"alice"', OPEN, "open the garden valve")
    assert "issued for" in str(book.redeem('"alice"', pending.token, "unlock the front door"))
    again = book.issue('"alice"', OPEN, "open the garden valve")
    assert not isinstance(book.redeem('"alice"', again.token, "Open  the garden VALVE"), str)


def test_unknown_tokens_are_refused_and_the_book_is_bounded() -> None:
    book = Confirmations(30.0, Clock(1_764_370_000.0), limit=3)
    tokens = [book.issue(f'"r{i}"', UNLOCK, "unlock the front door").token for i in range(5)]
    assert len(book) == 3
    assert "unknown" in str(book.redeem('"r0"', tokens[0]))  # the oldest went first
    assert "unknown" in str(book.redeem('"r4"', "0" * 32))
    assert len({*tokens}) == 5 and all(len(t) == 32 for t in tokens)


@pytest.mark.broker
def test_the_confirmation_round_trip_on_a_real_broker(
    tmp_path: Path,
    broker: Mosquitto,
    agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector],
) -> None:
    watch = collector_factory(broker.port, STATUS, REPLY, SET)
    config = home_config(tmp_path, broker.port, intents={"confirm_ttl": "5s"})
    start(agent_factory, config, watch)
    warm_up(watch)  # the model is loaded: the first step below gets its answer at once

    # step one: nothing is done, a token is offered
    ask(watch, "alice", "unlock the front door")
    first = reply(watch, "alice")
    assert first["ok"] is False and first["command"] is None, first
    assert first["error"].startswith("confirmation needed"), first
    offer = first["confirm"]
    assert (offer["device"], offer["actuator"], offer["action"]) == ("front-door", "lock", "unlock")
    assert offer["expires"] > time.time() - 60 and offer["prompt"]
    # step two: the token, from the same requester, does it
    ask(watch, "alice", confirm=offer["token"])
    done = reply(watch, "alice", 1)
    assert done["ok"] is True and done["error"] is None, done
    command = done["command"]
    assert (command["device"], command["action"]) == ("front-door", "unlock")
    assert verify(command, load_key(tmp_path / "command.key"))
    wait_for(lambda: len(watch.on(LOCK)) == 1, what="the unlock command")
    assert watch.on(LOCK)[0]["id"] == command["id"]

    # a replay of the same token is refused
    ask(watch, "alice", confirm=offer["token"])
    replayed = reply(watch, "alice", 2)
    assert replayed["ok"] is False and "already used" in replayed["error"]

    # another requester cannot use alice's token, and its attempt spends it
    ask(watch, "bob", "open the garden valve")
    token = reply(watch, "bob")["confirm"]["token"]
    ask(watch, "mallory", confirm=token)
    assert "another requester" in reply(watch, "mallory")["error"]
    ask(watch, "bob", confirm=token)
    assert "already used" in reply(watch, "bob", 1)["error"]

    # a guessed token, and one that expired
    ask(watch, "carol", confirm="0" * 32)
    assert "unknown" in reply(watch, "carol")["error"]
    ask(watch, "dave", "open the sprinklers")
    offer = reply(watch, "dave")["confirm"]
    while time.time() <= offer["expires"] + 0.5:
        time.sleep(0.2)
    ask(watch, "dave", confirm=offer["token"])
    assert "expired" in reply(watch, "dave", 1)["error"]

    # a marker request answered after all of the above: nothing else was sent meanwhile
    ask(watch, "end", "open the garage")
    reply(watch, "end")
    assert len(watch.on(LOCK)) == 1 and watch.on(VALVE) == []
