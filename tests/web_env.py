"""An agent process with the dashboard on, for the dashboard's API and browser tests."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from agent.config import read_yaml
from tests.conftest import AgentProcess, Collector, member_config, wait_for

TOKEN = "web-test-token-0123456789abcdef"
AGENT = "web-agent"
STATUS = f"edge/agents/{AGENT}/status"
HVAC_SET = "edge/actuators/livingroom-hvac/hvac/set"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def web_config(tmp_path: Path, broker_port: int, host: str = "127.0.0.1") -> tuple[Path, str]:
    """The example's climate policy on rules (no model to load) with the dashboard on ``host``
    with the test token; returns (config, the dashboard's base URL)."""
    path = member_config(tmp_path, broker_port, AGENT, tmp_path / "command.key", model=False,
                         engine="rules", every="1h")
    token_file = tmp_path / "web.token"
    token_file.write_text(TOKEN + "\n")
    port = free_port(host)
    data = read_yaml(path.read_text())
    data["web"] = {"host": host, "port": port, "token_file": str(token_file)}
    data["sensors"]["temperature"].pop("deadband", None)
    path.write_text(yaml.safe_dump(data))
    return path, f"http://{host}:{port}"


def start(factory: Callable[[Path], AgentProcess], config: Path, watch: Collector,
          base: str) -> AgentProcess:
    agent = factory(config)
    wait_for(lambda: any(s.get("state") == "online" for s in watch.on(STATUS)), 30,
             "the agent online")
    wait_for(lambda: call(base, "/api/access")[0] == 200, 30, "the dashboard listening")
    return agent


def call(base: str, path: str, token: str | None = None, body: Any = None,
         timeout: float = 30.0) -> tuple[int, Any]:
    """(HTTP status, decoded JSON body); 0 when nothing listens yet."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["X-Edge-Token"] = token
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, headers=headers,
                                 method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    except (urllib.error.URLError, ConnectionError):
        return 0, None
