"""Serving the dashboard: uvicorn on a daemon thread with its own event loop, started and
stopped by the agent."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING

import uvicorn

from agent.config import WebSection, is_loopback
from agent.errors import AgentError
from agent.web.access import load_token
from agent.web.app import build_app
from agent.web.intents import IntentWaiters
from agent.web.views import Views

if TYPE_CHECKING:
    from agent.service.runtime import Agent

log = logging.getLogger(__name__)


class WebServer:
    def __init__(self, agent: Agent, web: WebSection | None = None) -> None:
        web = web or agent.config.web
        assert web is not None, "the dashboard needs a web: section"
        self.host = web.host
        self.token = load_token(web, agent.config.agent.data_dir)
        self.views = Views(agent)
        self.waiters = IntentWaiters(agent)
        app = build_app(agent, self.token, is_loopback(web.host), self.views, self.waiters)
        config = uvicorn.Config(app, host=web.host, port=web.port, log_level="warning",
                                access_log=False, lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="web", daemon=True)
        self.port = 0

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        for _ in range(int(timeout / 0.05)):
            if self._server.started or not self._thread.is_alive():
                break
            self._thread.join(0.05)
        if not self._server.started:
            raise AgentError(f"the dashboard could not listen on {self.host}")
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        log.info("dashboard on %s", self.url)

    def _run(self) -> None:
        asyncio.run(self._server.serve())

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def stop(self) -> None:
        self._server.should_exit = True
        self._server.force_exit = True  # open event streams never end by themselves
        self._thread.join(5)
        self.views.close()


def serve_dashboard(agent: Agent) -> WebServer | None:
    """Start the dashboard if ``web:`` is configured: it hears the agent's intent replies."""
    if agent.config.web is None:
        return None
    server = WebServer(agent)
    agent.intent_listeners.append(server.waiters.on_reply)
    server.start()
    return server
