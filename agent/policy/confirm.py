"""Confirmation tokens for intents that act on locks and valves (actuators with ``confirm``).

The first request is answered with a one-time token instead of a command; only a second request
that carries the token, from the same requester id and before it expires, acts. A token is
bound to exactly the command that was asked (device, actuator, action, value) and to the words
of the request; any use of it, right or wrong, spends it. Pure: the clock and the token source
are injected.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from agent.policy.safety import Proposal

TOKEN_BYTES = 16
MAX_PENDING = 256  # tokens kept at once; the oldest goes first


@dataclass(frozen=True, slots=True)
class Pending:
    """A command waiting for its confirmation."""

    token: str
    requester: str
    proposal: Proposal
    text: str
    raw: str  # what the model wrote, for the audit
    expires: float


def same_words(a: str, b: str) -> bool:
    return " ".join(a.lower().split()) == " ".join(b.lower().split())


class Confirmations:
    def __init__(
        self,
        ttl: float = 30.0,
        clock: Callable[[], float] = time.time,
        token: Callable[[], str] = lambda: secrets.token_hex(TOKEN_BYTES),
        limit: int = MAX_PENDING,
    ) -> None:
        self.ttl = ttl
        self._clock = clock
        self._token = token
        self._limit = limit
        self._pending: OrderedDict[str, Pending] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def issue(self, requester: str, proposal: Proposal, text: str, raw: str = "") -> Pending:
        now = self._clock()
        for token in [t for t, p in self._pending.items() if p.expires < now]:
            del self._pending[token]
        while len(self._pending) >= self._limit:
            self._pending.popitem(last=False)
        pending = Pending(self._token(), requester, proposal, text, raw, now + self.ttl)
        self._pending[pending.token] = pending
        return pending

    def redeem(self, requester: str, token: str, text: str | None = None) -> Pending | str:
        """The command the token confirms, or why not (one line). The token is spent either
        way, so a wrong guess or a replay never gets a second try."""
        pending = self._pending.pop(token, None)
        if pending is None:
            return "confirmation token unknown or already used; ask again"
        if self._clock() > pending.expires:
            return f"confirmation token expired after {self.ttl:g}s; ask again"
        if pending.requester != requester:
            return "confirmation token was issued to another requester id; ask again"
        if text is not None and not same_words(text, pending.text):
            return f"confirmation token was issued for {pending.text!r}, not this request"
        return pending
