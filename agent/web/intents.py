"""The Intents page's path into the agent: the request goes into the agent's own intent queue
(the one the broker topic feeds, with its rate limit and safety layer) and the page waits for
the reply the agent publishes."""

from __future__ import annotations

import asyncio
import secrets
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.service.runtime import Agent


class IntentWaiters:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self._waiting: dict[str, Future[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def on_reply(self, reply: dict[str, Any]) -> None:
        """Called with every reply the agent publishes (on the intents worker's thread)."""
        with self._lock:
            fut = self._waiting.pop(str(reply.get("id")), None)
        if fut is not None and not fut.done():
            fut.set_result(reply)

    async def ask(self, text: str, timeout: float) -> dict[str, Any]:
        queue = self.agent.intents
        if queue is None:
            return {"id": None, "ok": False, "command": None,
                    "error": "this agent takes no intents (it has no policies)"}
        request_id = f"web-{secrets.token_hex(6)}"
        fut: Future[dict[str, Any]] = Future()
        with self._lock:
            self._waiting[request_id] = fut
        try:
            payload = f'{{"id": "{request_id}", "text": {_quote(text)}}}'.encode()
            queue.submit(payload)  # refused requests are answered too (rate limit, full queue)
            return await asyncio.wait_for(asyncio.wrap_future(fut), timeout)
        except asyncio.TimeoutError:
            return {"id": request_id, "ok": False, "command": None,
                    "error": f"no reply within {timeout:g} s"}
        finally:
            with self._lock:
                self._waiting.pop(request_id, None)


def _quote(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)
