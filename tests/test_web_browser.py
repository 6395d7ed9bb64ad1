"""The dashboard in a real browser (headless Chromium): it loads without console errors, shows
readings published a moment before, the decisions table, an intent that reaches a test actuator,
and nothing at all off loopback without the token."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from agent.broker import Mosquitto
from tests.browser import chromium, console_errors
from tests.conftest import AgentProcess, Collector, wait_for
from tests.web_env import AGENT, HVAC_SET, STATUS, TOKEN, start, web_config

pytestmark = [pytest.mark.broker, pytest.mark.slow]
WAIT = 30.0
TEMPERATURE = "edge/sensors/livingroom-1/temperature"


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


def until(driver: webdriver.Chrome, check: Callable[[webdriver.Chrome], object],
          what: str) -> None:
    WebDriverWait(driver, WAIT, poll_frequency=0.2).until(check, message=what)


def text(driver: webdriver.Chrome, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def test_pages_live_data_and_intents_in_a_browser(
    tmp_path: Path, broker: Mosquitto, agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector], browser: webdriver.Chrome,
) -> None:
    config, base = web_config(tmp_path, broker.port)
    actuator = collector_factory(broker.port, STATUS, HVAC_SET)  # the test actuator
    start(agent_factory, config, actuator, base)

    browser.get(f"{base}/overview?token={TOKEN}")  # keeps the token in a cookie, once
    until(browser, lambda d: "online" in text(d, "cards"), "the overview live")
    assert AGENT in browser.title
    assert "livingroom" in text(browser, "peer-groups")
    assert console_errors(browser) == []

    now = time.time()
    values = [22.5, 22.7, 22.6, 22.9, 23.1]
    for i, v in enumerate(values):
        actuator.publish(TEMPERATURE, json.dumps({"value": v, "ts": now - 5 + i, "seq": i + 1}))
    browser.get(f"{base}/series?series=livingroom-1/temperature")
    chart = (By.ID, "chart")
    until(browser, lambda d: d.find_element(*chart).get_attribute("data-points") == "5",
          "the five readings in the chart")
    assert browser.find_element(*chart).get_attribute("data-last") == "23.1"
    assert browser.find_elements(By.CSS_SELECTOR, "#chart canvas"), "uPlot drew"
    until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#features tbody tr")) > 0,
          "the features per window")
    assert console_errors(browser) == []

    browser.get(f"{base}/intents")
    until(browser, lambda d: "intent queue" in text(d, "intent-note"), "the intents page")
    browser.find_element(By.ID, "intent-text").send_keys("turn off the living room ac")
    browser.find_element(By.ID, "intent-send").click()
    until(browser, lambda d: d.find_element(By.ID, "intent-reply").get_attribute("data-ok")
          == "true", "the intent's reply")
    reply = json.loads(text(browser, "intent-reply"))
    assert reply["command"]["action"] == "off"
    wait_for(lambda: bool(actuator.on(HVAC_SET)), WAIT, "the command at the test actuator")
    assert actuator.on(HVAC_SET)[0]["id"] == reply["command"]["id"]
    assert console_errors(browser) == []

    for seq in range(6, 16):  # a steady 26 C: past the outlier filter, the clean value crosses
        actuator.publish(TEMPERATURE, json.dumps({"value": 26.0, "seq": seq}))
    browser.get(f"{base}/decisions")
    rows = (By.CSS_SELECTOR, "#decisions tr.row")
    until(browser, lambda d: any("climate rules crossing" in r.text
                                 for r in d.find_elements(*rows)),
          "the policy's decision (rules engine, on the crossing) in the table")
    intent_row = next(r for r in browser.find_elements(*rows) if "intent" in r.text)
    assert reply["command"]["id"] in intent_row.text
    intent_row.click()
    detail = browser.find_elements(By.CSS_SELECTOR, "#decisions tr.detail")
    assert any(d.is_displayed() and "digest:" in d.text for d in detail)

    browser.get(f"{base}/health")
    until(browser, lambda d: "live" in text(d, "live"), "the health page live")
    browser.get(f"{base}/peers")
    until(browser, lambda d: AGENT in text(d, "groups"), "the group and its leader")
    until(browser, lambda d: "cool" in text(d, "group-decisions"), "the group's decision")
    assert console_errors(browser) == []


def test_off_loopback_without_token_shows_nothing(
    tmp_path: Path, broker: Mosquitto, agent_factory: Callable[[Path], AgentProcess],
    collector_factory: Callable[..., Collector], browser: webdriver.Chrome,
) -> None:
    # 127.0.0.2 stays on this machine but is not 127.0.0.1/::1/localhost: treated as reachable
    config, base = web_config(tmp_path, broker.port, host="127.0.0.2")
    watch = collector_factory(broker.port, STATUS)
    start(agent_factory, config, watch, base)
    actuator_text = "livingroom"

    browser.get(f"{base}/overview")
    until(browser, lambda d: d.find_element(By.ID, "login").is_displayed(), "the token prompt")
    assert not browser.find_element(By.ID, "content").is_displayed()
    assert actuator_text not in browser.find_element(By.TAG_NAME, "body").text
    assert "online" not in browser.find_element(By.TAG_NAME, "body").text
    assert console_errors(browser) == []

    browser.find_element(By.ID, "token").send_keys("wrong-token-wrong-token")
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    until(browser, lambda d: "not this agent's" in text(d, "login-error"), "the wrong token")
    assert not browser.find_element(By.ID, "content").is_displayed()

    browser.find_element(By.ID, "token").send_keys(TOKEN)  # the page asks once, keeps it
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    until(browser, lambda d: "online" in text(d, "cards"), "the overview with the token")
    browser.get(f"{base}/peers")
    until(browser, lambda d: actuator_text in text(d, "groups"), "the cookie kept")
