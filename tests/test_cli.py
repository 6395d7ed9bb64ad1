"""The command lines: help everywhere, exit codes as SPEC 8, errors with their paths."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from agent.broker import Mosquitto
from agent.cli import cli
from agent.config import load_config
from agent.pipeline.core import Pipeline
from agent.pipeline.parse import parse_reading
from agent.storage import Store
from docs.gen.hooks import cli_page
from firmware_sim.cli import cli as sim_cli
from tests.conftest import EXAMPLE_CONFIG
from tests.helpers import ROOT

BAD = """\
agent:
  status_interval: 30
  colour: red
mqtt:
  protocol: 4
policies:
  - name: climate
    inputs: [room/temperature]
    actuators:
      - {device: hvac, actuator: hvac, actions: [cool, off], value: {min: 30, max: 16}}
"""


def commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out = []
    for name, cmd in group.commands.items():
        out.append((f"{prefix}{name}", cmd))
        if isinstance(cmd, click.Group):
            out.extend(commands(cmd, f"{prefix}{name} "))
    return out


@pytest.mark.parametrize("group", [cli, sim_cli], ids=["edge-agent", "firmware-sim"])
def test_every_command_has_help_and_a_page_in_the_docs(group: click.Group) -> None:
    """Each command's --help is in the generated command-line reference of the docs (built
    and checked end to end by tests/test_docs.py)."""
    runner = CliRunner()
    reference = cli_page()
    prog = "edge-agent" if group is cli else "firmware-sim"
    for name, cmd in commands(group):
        assert f"## `{prog} {name}`" in reference, f"{prog} {name} is not in the CLI reference"
        assert cmd.help and len(cmd.help) > 20, f"{name} has no help text"
        result = runner.invoke(group, [*name.split(), "--help"], prog_name=prog,
                               terminal_width=80)
        assert result.exit_code == 0, name
        assert "Usage:" in result.output
        assert result.output.rstrip() in reference, f"{prog} {name} --help differs in the docs"
        for param in cmd.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts} has no help"


def test_check_config_ok_and_bad(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(cli, ["check-config", str(EXAMPLE_CONFIG)])
    assert ok.exit_code == 0 and ": ok" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    result = runner.invoke(cli, ["check-config", str(bad)])
    assert result.exit_code == 2
    assert "invalid configuration (4 errors)" in result.output
    for line in ['agent.status_interval: duration must be a string like "30s", got 30 (line 2)',
                 "agent.colour: unknown key (line 3)",
                 "mqtt.protocol: MQTT protocol must be 5 or 3.1.1, got 4 (line 5)",
                 "policies[0].actuators[0].value: value range must be [low, high]"]:
        assert line in result.output
    missing = runner.invoke(cli, ["check-config", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "cannot read" in missing.output


def test_run_with_a_bad_config_exits_2_and_starts_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD.replace("agent:\n", f"agent:\n  data_dir: {tmp_path / 'data'}\n"))
    proc = subprocess.run([sys.executable, "-m", "agent", "run", "-c", str(bad)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "agent.colour: unknown key" in proc.stderr
    assert not (tmp_path / "data").exists()


def test_usage_errors_exit_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "agent", "run"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "Missing option" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "agent", "frobnicate"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2


def test_readings_and_features_show_what_is_stored(tmp_path: Path) -> None:
    cfg_path = tmp_path / "agent.yaml"
    cfg_path.write_text(EXAMPLE_CONFIG.read_text().replace("/var/lib/edge-agent",
                                                           str(tmp_path / "data")))
    cfg = load_config(cfg_path)
    store, pipeline = Store(cfg.db_path), Pipeline(cfg)
    now = time.time()
    rows = []
    for i, value in enumerate([68.0, 68.9, 69.8, 70.7]):
        payload = json.dumps({"value": value, "unit": "F", "seq": i, "ts": now - 30 + i * 10})
        reading = parse_reading("edge/sensors/room-1/temperature", payload.encode(), now,
                                prefix="edge", max_bytes=4096)
        processed = pipeline.process(reading)
        assert processed is not None
        rows.append(processed)
    store.write(rows)
    store.close()
    runner = CliRunner()
    shown = runner.invoke(cli, ["readings", "-c", str(cfg_path)])
    assert shown.exit_code == 0, shown.output
    assert "68.9F" in shown.output and "4 readings stored" in shown.output
    feats = runner.invoke(cli, ["features", "-c", str(cfg_path), "--window", "1m"])
    assert feats.exit_code == 0, feats.output
    line = next(ln for ln in feats.output.splitlines() if ln.startswith("room-1/temperature"))
    assert line.split()[1:3] == ["60s", "4"]
    bad_window = runner.invoke(cli, ["features", "-c", str(cfg_path), "--window", "soon"])
    assert bad_window.exit_code == 2


@pytest.mark.broker
def test_firmware_sim_load_reports_the_rate(tmp_path: Path) -> None:
    with Mosquitto(workdir=tmp_path) as broker:
        result = CliRunner().invoke(sim_cli, ["load", "--broker", f"127.0.0.1:{broker.port}",
                                              "--devices", "3", "--count", "60", "--rate", "0"])
    assert result.exit_code == 0, result.output
    assert "sent 60 readings from 3 devices" in result.output
    assert "60 acknowledged by the broker" in result.output
