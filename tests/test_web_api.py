"""The dashboard's JSON endpoints on a real `edge-agent run` with `web:` set, on a real broker."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.broker import Mosquitto
from tests.conftest import AgentProcess, Collector, wait_for
from tests.web_env import AGENT, HVAC_SET, STATUS, TOKEN, call, start, web_config

pytestmark = pytest.mark.broker


def test_endpoints_show_what_the_agent_sees(
    tmp_path: Path, broker: Mosquitto, agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector],
) -> None:
    config, base = web_config(tmp_path, broker.port)
    watch = collector_factory(broker.port, STATUS, HVAC_SET)
    start(agent_factory, config, watch, base)

    assert call(base, "/api/access")[1] == {"read": True, "write": False, "loopback": True}
    assert call(base, "/api/access", TOKEN)[1]["write"] is True

    now = time.time()
    for i in range(5):
        watch.publish("edge/sensors/livingroom-1/temperature",
                      json.dumps({"value": 21.0 + i / 10, "ts": now - 5 + i, "seq": i + 1}))
    watch.publish("edge/sensors/livingroom-1/temperature", "not a number")

    def stored() -> bool:
        status, body = call(base, "/api/series/livingroom-1/temperature?window=600")
        return status == 200 and len(body["points"]) == 5

    wait_for(stored, 20, "five readings in the series")
    body = call(base, "/api/series/livingroom-1/temperature?window=600")[1]
    assert [p[1] for p in body["points"]] == pytest.approx([21.0, 21.1, 21.2, 21.3, 21.4])
    assert body["band"] == [20, 24]
    assert body["features"], "features per window"
    assert {"device": "livingroom-1", "quantity": "temperature", "band": [20, 24]} in \
        call(base, "/api/series")[1]

    wait_for(lambda: bool(call(base, "/api/overview")[1]["rejected_by_reason"]), 20, "a rejection")
    overview = call(base, "/api/overview")[1]
    assert overview["agent"] == AGENT and overview["state"] == "online"
    assert overview["broker"]["connected"] is True
    assert sum(overview["rejected_by_reason"].values()) == 1
    assert overview["policies"]["climate"]["engine"] == "rules"
    assert overview["leaders"] == {"livingroom": AGENT}

    health = call(base, "/api/health")[1]
    assert {"enabled", "items", "paused", "labels"} <= set(health)
    assert call(base, "/api/peers")[1]["groups"] == ["livingroom"]


def test_acting_needs_the_token_and_goes_through_the_intent_path(
    tmp_path: Path, broker: Mosquitto, agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector],
) -> None:
    config, base = web_config(tmp_path, broker.port)
    watch = collector_factory(broker.port, STATUS, HVAC_SET, f"edge/agents/{AGENT}/intents/#")
    start(agent_factory, config, watch, base)
    text = {"text": "turn off the living room ac"}

    assert call(base, "/api/intents", None, text)[0] == 403
    assert call(base, "/api/intents", "not-the-token-at-all", text)[0] == 403
    assert call(base, "/api/health/series/x/confirm", None, {})[0] == 403
    assert not watch.on(HVAC_SET)

    status, reply = call(base, "/api/intents", TOKEN, text)
    assert status == 200, reply
    assert reply["ok"] is True and reply["command"]["action"] == "off", reply
    wait_for(lambda: bool(watch.on(HVAC_SET)), 20, "the command at the actuator")
    assert watch.on(HVAC_SET)[0]["id"] == reply["command"]["id"]
    # the same reply went out on the broker, as for any other caller
    replies = f"edge/agents/{AGENT}/intents/reply"
    wait_for(lambda: bool(watch.on(replies)), 20, "the reply on the broker")
    assert [r["id"] for r in watch.on(replies)] == [reply["id"]]

    wait_for(lambda: bool(call(base, "/api/decisions?source=intent")[1]), 20,
             "the intent audited")
    rows = call(base, "/api/decisions")[1]
    assert rows[0]["command"]["id"] == reply["command"]["id"]
    assert call(base, "/api/decisions?policy=no-such-policy")[1] == []


def test_off_loopback_no_token_no_data(
    tmp_path: Path, broker: Mosquitto, agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector],
) -> None:
    config, base = web_config(tmp_path, broker.port, host="127.0.0.2")
    watch = collector_factory(broker.port, STATUS)
    start(agent_factory, config, watch, base)
    assert call(base, "/api/access")[1] == {"read": False, "write": False, "loopback": False}
    for path in ("/api/overview", "/api/series", "/api/decisions", "/api/health",
                 "/api/peers", "/api/stream", "/api/series/livingroom-1/temperature"):
        assert call(base, path)[0] == 401, path
        assert call(base, path, "wrong-token-wrong-token")[0] == 401, path
    assert call(base, "/api/overview", TOKEN)[1]["agent"] == AGENT
