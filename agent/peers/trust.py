"""What this agent believes of its peers: its identity, the roster, and the refusals counted.

Two modes:

- with ``security.roster_file`` (and ``security.identity_key_file``): every peer message
  (status, result, group outcome, federation round, update and key) must be signed by the
  roster key of the agent its topic (or, for outcomes and rounds, its ``leader`` or
  ``coordinator``) names; unsigned, badly signed or unknown-signer messages are refused and
  counted; this agent signs what it sends;
- without a roster: the group trusts anyone who can publish on the broker, as before; the
  agent logs a warning at start saying what to add. The checks that need no key (the agent in
  the payload is the agent in the topic, bounds, windows) hold in both modes.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.errors import AgentError
from agent.peers.identity import Identity, Roster

log = logging.getLogger(__name__)


class Trust:
    def __init__(
        self,
        agent_id: str,
        identity: Identity | None = None,
        roster: Roster | None = None,
        roster_path: Path | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.identity = identity
        self.roster = roster
        self.roster_path = roster_path
        self.refused: Counter[str] = Counter()  # by kind of message
        self._lock = threading.Lock()

    @classmethod
    def from_files(
        cls, agent_id: str, identity_file: Path | None, roster_file: Path | None
    ) -> Trust:
        """AgentError if a file is unusable or the roster does not list this agent's key."""
        identity = None if identity_file is None else Identity.load(agent_id, identity_file)
        roster = None if roster_file is None else Roster.load(roster_file)
        if roster is not None and identity is not None:
            cls._check_self(roster, identity)
        return cls(agent_id, identity, roster, roster_file)

    @staticmethod
    def _check_self(roster: Roster, identity: Identity) -> None:
        if identity.agent_id not in roster:
            raise AgentError(f"{roster.source}: this agent ({identity.agent_id}) is not in the "
                             f"roster; add the line {identity.agent_id}: {identity.public}")
        mine = {"signer": identity.agent_id}
        try:
            roster.verify(identity.sign(mine), identity.agent_id, "own key")
        except AgentError:
            raise AgentError(f"{roster.source}: the key listed for {identity.agent_id} is not "
                             f"the one in security.identity_key_file ({identity.public})"
                             ) from None

    @property
    def enforcing(self) -> bool:
        return self.roster is not None

    def check(self, data: Mapping[str, Any], sender: str, what: str) -> None:
        """Refuse a message not signed by ``sender`` (only with a roster)."""
        roster = self.roster
        if roster is not None:
            roster.verify(data, sender, what)

    def in_roster(self, agent: str) -> bool:
        roster = self.roster
        return roster is None or agent in roster

    def count(self, kind: str) -> None:
        with self._lock:
            self.refused[kind] += 1

    def sign(self, payload: bytes) -> bytes:
        return payload if self.identity is None else self.identity.sign_payload(payload)

    def reload(self) -> bool:
        """Read the roster file again (SIGHUP); a bad file is refused and the old roster kept."""
        if self.roster_path is None:
            return False
        try:
            roster = Roster.load(self.roster_path)
            if self.identity is not None:
                self._check_self(roster, self.identity)
        except AgentError as exc:
            log.error("roster reload refused, the running roster stays: %s", exc)
            return False
        self.roster = roster
        log.info("roster reloaded from %s: %d members (%s)", self.roster_path, len(roster),
                 ", ".join(roster.ids))
        return True

    def status(self) -> dict[str, Any]:
        with self._lock:
            refused = dict(self.refused)
        return {"roster": None if self.roster is None else len(self.roster),
                "refused": refused}
