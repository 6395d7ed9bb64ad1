"""The systemd unit: rendered, checked by systemd-analyze, installed and removed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from agent.errors import AgentError, ConfigError
from agent.service.install import (
    DEFAULT_CONFIG,
    DEFAULT_DATA_DIR,
    DEFAULT_USER,
    EXAMPLE_EXEC,
    UNIT_NAME,
    install,
    render_unit,
    run_command,
    uninstall,
)
from tests.helpers import ROOT

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
# verify checks that ExecStart= names an executable file
EXEC = Path(sys.executable).with_name("edge-agent")
EXEC = EXEC if EXEC.is_file() else Path(sys.executable)


def settings(unit: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_the_unit_is_a_hardened_notify_service() -> None:
    s = settings(render_unit("/etc/edge-agent/agent.yaml", "edge-agent", EXEC, DEFAULT_DATA_DIR))
    assert s["Type"] == ["notify"]
    assert s["ExecStart"] == [f"{EXEC} run -c /etc/edge-agent/agent.yaml"]
    assert s["WatchdogSec"] == ["30s"]
    assert s["Restart"] == ["on-failure"]
    assert s["User"] == s["Group"] == ["edge-agent"]
    assert s["StateDirectory"] == ["edge-agent"]
    for key in (
        "NoNewPrivileges",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectControlGroups",
        "LockPersonality",
        "MemoryDenyWriteExecute",
        "RestrictSUIDSGID",
        "RestrictRealtime",
    ):
        assert s[key] == ["yes"], key
    assert s["ProtectSystem"] == ["strict"]
    assert s["ProtectHome"] == ["yes"]
    assert s["CapabilityBoundingSet"] == [""]
    assert s["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert s["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    assert s["SystemCallErrorNumber"] == ["EPERM"]
    assert "ReadWritePaths" not in s


def test_a_data_dir_outside_var_lib_is_made_writable() -> None:
    s = settings(render_unit("/etc/edge-agent/a.yaml", "edge-agent", EXEC, "/srv/edge data"))
    assert s["ReadWritePaths"] == ['"/srv/edge data"']
    assert "StateDirectory" not in s


def test_paths_in_a_home_leave_home_readable() -> None:
    s = settings(
        render_unit(
            "/home/pi/agent.yaml",
            "pi",
            "/home/pi/.local/bin/edge-agent",
            "/var/lib/edge-agent/livingroom",
        )
    )
    assert s["ProtectHome"] == ["read-only"]
    assert s["StateDirectory"] == ["edge-agent/livingroom"]


def test_specifiers_and_variables_in_paths_are_escaped() -> None:
    s = settings(render_unit("/etc/edge %agent/$a.yaml", "edge-agent", EXEC, DEFAULT_DATA_DIR))
    assert s["ExecStart"] == [f'{EXEC} run -c "/etc/edge %%agent/$$a.yaml"']


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("etc/agent.yaml", "edge-agent", EXEC, DEFAULT_DATA_DIR), "absolute path"),
        (("/etc/a\nb.yaml", "edge-agent", EXEC, DEFAULT_DATA_DIR), "newlines"),
        (("/etc/agent.yaml", "Edge Agent", EXEC, DEFAULT_DATA_DIR), "invalid user name"),
    ],
)
def test_bad_arguments_are_refused(args: tuple[str, str, Path, Path], message: str) -> None:
    with pytest.raises(AgentError, match=message):
        render_unit(*args)


def test_the_example_unit_is_what_install_writes() -> None:
    example = (ROOT / "config" / "edge-agent.service").read_text()
    assert example == render_unit(DEFAULT_CONFIG, DEFAULT_USER, EXAMPLE_EXEC, DEFAULT_DATA_DIR)


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@needs_analyze
@pytest.mark.parametrize("data_dir", [DEFAULT_DATA_DIR, Path("/srv/edge-agent")])
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path, data_dir: Path) -> None:
    (tmp_path / UNIT_NAME).write_text(
        render_unit("/etc/edge-agent/agent.yaml", "edge-agent", EXEC, data_dir)
    )
    result = analyze("verify", f"./{UNIT_NAME}", cwd=tmp_path)
    ours = [line for line in (result.stdout + result.stderr).splitlines() if UNIT_NAME in line]
    assert result.returncode == 0 and ours == [], result.stdout + result.stderr


@needs_analyze
def test_systemd_analyze_security_rates_it_ok(tmp_path: Path) -> None:
    (tmp_path / UNIT_NAME).write_text(
        render_unit("/etc/edge-agent/agent.yaml", "edge-agent", EXEC, DEFAULT_DATA_DIR)
    )
    result = analyze("security", "--offline=yes", f"./{UNIT_NAME}", cwd=tmp_path)
    if "--offline" in result.stderr:  # systemd before 250 cannot rate a unit file
        pytest.skip("this systemd-analyze cannot rate unit files offline")
    match = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0 and match.group(2) == "OK", match.group(0)


class Recorder:
    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> None:
        self.commands.append(list(argv))


def write_config(tmp_path: Path, data_dir: Path) -> Path:
    config = tmp_path / "agent.yaml"
    config.write_text(f"agent: {{id: test-agent, data_dir: {data_dir}}}\n")
    config.chmod(0o640)
    return config


def test_install_writes_and_enables_the_unit(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = write_config(tmp_path, data_dir)
    run = Recorder()
    done = install(config, "root", tmp_path / "units", run=run, exec_path=EXEC)
    assert done.unit_path == tmp_path / "units" / UNIT_NAME
    assert done.unit_path.read_text() == render_unit(config, "root", EXEC, data_dir)
    assert done.unit_path.stat().st_mode & 0o777 == 0o644
    assert not done.created_user
    assert run.commands == [["systemctl", "daemon-reload"], ["systemctl", "enable", UNIT_NAME]]
    assert data_dir.is_dir()  # not under /var/lib: install makes it, systemd would not


def test_install_creates_a_missing_system_user(tmp_path: Path) -> None:
    config = write_config(tmp_path, Path("/var/lib/edge-agent-test"))
    run = Recorder()
    done = install(config, "edge-agent-nobody", tmp_path, run=run, exec_path=EXEC, start=True)
    assert done.created_user
    useradd, _, enable = run.commands
    assert useradd[0] == "useradd" and useradd[-1] == "edge-agent-nobody"
    assert "--system" in useradd and "--user-group" in useradd
    assert useradd[useradd.index("--home-dir") + 1] == "/var/lib/edge-agent-test"
    assert enable == ["systemctl", "enable", "--now", UNIT_NAME]
    assert not Path("/var/lib/edge-agent-test").exists()  # systemd's StateDirectory= does it


def test_install_warns_about_open_secrets(tmp_path: Path) -> None:
    key = tmp_path / "command.key"
    key.write_text("k")
    key.chmod(0o644)
    config = write_config(tmp_path, tmp_path / "data")
    config.write_text(config.read_text() + f"security: {{command_key_file: {key}}}\n")
    done = install(config, "root", tmp_path / "units", run=Recorder(), exec_path=EXEC)
    assert any(w.startswith(f"{key} is readable by every user") for w in done.warnings)


def test_install_refuses_a_bad_config_and_touches_nothing(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("agent: {idd: x}\n")
    run = Recorder()
    with pytest.raises(ConfigError, match=r"agent\.idd: unknown key"):
        install(config, "root", tmp_path / "units", run=run, exec_path=EXEC)
    assert run.commands == []
    assert not (tmp_path / "units").exists()


def test_install_wants_an_absolute_data_dir(tmp_path: Path) -> None:
    config = write_config(tmp_path, Path("data"))
    with pytest.raises(AgentError, match=r"agent\.data_dir must be an absolute path, got data"):
        install(config, "root", tmp_path / "units", run=Recorder(), exec_path=EXEC)


def test_uninstall_disables_and_removes(tmp_path: Path) -> None:
    unit = tmp_path / UNIT_NAME
    unit.write_text("[Service]\n")
    run = Recorder()
    assert uninstall(tmp_path, run=run) == unit
    assert not unit.exists()
    assert run.commands == [
        ["systemctl", "disable", "--now", UNIT_NAME],
        ["systemctl", "daemon-reload"],
    ]
    run.commands.clear()
    assert uninstall(tmp_path, run=run) is None
    assert run.commands == []


def test_run_command_translates_failures() -> None:
    with pytest.raises(AgentError, match=r"sh -c echo nope >&2; exit 3 failed \(3\): nope"):
        run_command(["sh", "-c", "echo nope >&2; exit 3"])
    with pytest.raises(AgentError, match="no-such-tool-here is not installed"):
        run_command(["no-such-tool-here"])
