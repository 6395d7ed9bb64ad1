"""``edge-agent service install``: a hardened systemd unit for this agent, its user, enabled.

The unit is ``Type=notify`` with a watchdog; it runs as its own system user with a read-only
file system except for ``data_dir`` (a ``StateDirectory=`` when it lies under ``/var/lib``),
no capabilities, the ``@system-service`` system calls without ``@privileged`` and
``@resources`` (others fail with EPERM), only AF_UNIX/AF_INET/AF_INET6 sockets, and
``MemoryDenyWriteExecute=``. llama.cpp on the CPU tolerates all of it: it maps the model
read-only and compiles nothing at run time. Checked under seccomp filters built like systemd
252's for these settings, by loading the bundled model and embedding, scoring and generating
with a grammar, and by running the agent as an unprivileged user through a decision and a
signed command. The only refused call seen is numpy's OpenBLAS asking ``mbind`` for NUMA
placement, a hint it does without. ``ProcSubset=pid`` is not set: choosing the model's
threads reads ``/proc/stat``.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from agent.errors import AgentError

if TYPE_CHECKING:
    from agent.config import Config

log = logging.getLogger(__name__)

UNIT_NAME = "edge-agent.service"
UNIT_DIR = Path("/etc/systemd/system")
STATE_ROOT = PurePosixPath("/var/lib")
HOME_ROOTS = (PurePosixPath("/home"), PurePosixPath("/root"), PurePosixPath("/run/user"))
DEFAULT_USER = "edge-agent"
DEFAULT_CONFIG = Path("/etc/edge-agent/agent.yaml")
DEFAULT_DATA_DIR = Path("/var/lib/edge-agent")
EXAMPLE_EXEC = Path("/opt/edge-agent/.venv/bin/edge-agent")  # config/edge-agent.service
WATCHDOG_SEC = 30

Runner = Callable[[Sequence[str]], None]
USERADD = ("useradd", "--system", "--user-group", "--no-create-home")

UNIT_TEMPLATE = """\
# Written by `edge-agent service install`; `edge-agent service uninstall` removes it.
[Unit]
Description=edge-agent: MQTT IoT edge agent
After=network-online.target mosquitto.service
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart=@EXEC@ run -c @CONFIG@
ExecReload=/bin/kill -HUP $MAINPID
User=@USER@
Group=@USER@
@DATA@
UMask=0077
# READY=1 comes once the broker is connected and the model loaded
TimeoutStartSec=5min
# the agent commits, acknowledges and goes offline within 10 seconds of SIGTERM
TimeoutStopSec=20s
# pings only while ingest and the scheduler make progress
WatchdogSec=@WATCHDOG@
Restart=on-failure
RestartSec=5s

NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=@PROTECT_HOME@
PrivateTmp=yes
PrivateDevices=yes
PrivateUsers=yes
PrivateMounts=yes
ProtectHostname=yes
ProtectClock=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectProc=invisible
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
"""

_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


def _quote(path: PurePosixPath | Path) -> str:
    """A path as one word of a unit file: specifiers (%) and variables ($) escaped, quoted
    when it holds spaces."""
    text = str(path)
    if not PurePosixPath(text).is_absolute() or any(ch in text for ch in "\n\r\"\\'"):
        raise AgentError(
            f"cannot use {text!r} in a systemd unit: give an absolute path "
            "without quotes, backslashes or newlines"
        )
    text = text.replace("%", "%%").replace("$", "$$")
    return f'"{text}"' if any(ch.isspace() for ch in text) else text


def _under(path: PurePosixPath, root: PurePosixPath) -> bool:
    return path == root or root in path.parents


_STATE_NAME = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


def _state_directory(data_dir: PurePosixPath) -> str | None:
    """The ``StateDirectory=`` name for ``data_dir``, or None when it is not under /var/lib."""
    if not _under(data_dir, STATE_ROOT) or data_dir == STATE_ROOT:
        return None
    name = str(data_dir.relative_to(STATE_ROOT))
    return name if _STATE_NAME.match(name) else None


def _data_lines(data_dir: PurePosixPath) -> str:
    name = _state_directory(data_dir)
    if name is not None:
        return f"StateDirectory={name}\nStateDirectoryMode=0750"
    return f"ReadWritePaths={_quote(data_dir)}"


def render_unit(
    config_path: Path | str,
    user: str,
    exec_path: Path | str,
    data_dir: Path | str,
    *,
    watchdog: int = WATCHDOG_SEC,
) -> str:
    """The unit file's text. Paths must be absolute; ``data_dir`` becomes the service's only
    writable place (``StateDirectory=`` under /var/lib, so systemd creates and owns it)."""
    if not _USER.match(user):
        raise AgentError(f"invalid user name {user!r} (lower case letters, digits, _ and -)")
    if watchdog < 2:
        raise AgentError(f"watchdog must be at least 2 seconds, got {watchdog}")
    paths = [PurePosixPath(str(p)) for p in (config_path, exec_path, data_dir)]
    in_home = any(_under(p, home) for p in paths for home in HOME_ROOTS)
    values = {
        "@EXEC@": _quote(paths[1]),
        "@CONFIG@": _quote(paths[0]),
        "@USER@": user,
        "@DATA@": _data_lines(paths[2]),
        "@WATCHDOG@": f"{watchdog}s",
        "@PROTECT_HOME@": "read-only" if in_home else "yes",
    }
    return re.sub("|".join(values), lambda m: values[m.group(0)], UNIT_TEMPLATE)


def run_command(argv: Sequence[str]) -> None:
    """Run a system command; its failure becomes an AgentError with what it said."""
    try:
        subprocess.run(list(argv), check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise AgentError(f"{argv[0]} is not installed") from None
    except subprocess.CalledProcessError as exc:
        said = (exc.stderr or exc.stdout or "").strip()
        raise AgentError(f"{' '.join(argv)} failed ({exc.returncode}): {said}") from None


def find_executable() -> Path:
    """The ``edge-agent`` script of this installation (next to this Python, or on PATH)."""
    beside = Path(sys.executable).with_name("edge-agent")
    if beside.is_file():
        return beside
    found = shutil.which("edge-agent")
    if found is None:
        raise AgentError("cannot find the edge-agent executable; install the package first")
    return Path(found).absolute()


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@dataclass
class Installed:
    unit_path: Path
    created_user: bool
    warnings: list[str] = field(default_factory=list)


def install(
    config_path: Path,
    user: str = DEFAULT_USER,
    unit_dir: Path = UNIT_DIR,
    *,
    run: Runner = run_command,
    exec_path: Path | None = None,
    watchdog: int = WATCHDOG_SEC,
    start: bool = False,
) -> Installed:
    """Validate the config, create ``user`` if missing, write the unit and enable it.

    ``run`` executes ``useradd`` and ``systemctl`` command lines (tests record them)."""
    from agent.config import load_config

    config_path = config_path.absolute()
    cfg = load_config(config_path)  # ConfigError lists every problem
    data_dir = cfg.agent.data_dir
    if not data_dir.is_absolute():  # the service runs in /, not here
        raise AgentError(f"{config_path}: agent.data_dir must be an absolute path, got {data_dir}")
    executable = exec_path or find_executable()
    text = render_unit(config_path, user, executable, data_dir, watchdog=watchdog)
    created = not user_exists(user)
    if created:
        run([*USERADD, "--home-dir", str(data_dir), "--shell", _nologin(), user])
    if _state_directory(PurePosixPath(data_dir)) is None:
        _own_data_dir(data_dir, user)  # systemd makes a StateDirectory itself, not this
    unit_path = unit_dir / UNIT_NAME
    _write(unit_path, text)
    run(["systemctl", "daemon-reload"])
    run(["systemctl", "enable", *(["--now"] if start else []), UNIT_NAME])
    log.info("installed %s for user %s", unit_path, user)
    return Installed(unit_path, created, _access_warnings(cfg, config_path, user))


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o644)
    os.replace(tmp, path)


def _access_warnings(cfg: Config, config_path: Path, user: str) -> list[str]:
    """Secrets others can read, and a config file the service user cannot."""
    from agent.service.permissions import check_permissions, paths_to_check, readable_by

    try:
        gid = pwd.getpwnam(user).pw_gid
    except KeyError:  # not created (a dry run): judge by the files alone
        return check_permissions(paths_to_check(cfg), trusted_gids=set())
    warnings = check_permissions(paths_to_check(cfg), trusted_gids={gid})
    if not readable_by(config_path, user):
        fix = f"chgrp {user} {config_path} && chmod 640 {config_path}"
        warnings.append(f"{config_path} is not readable by user {user}: {fix}")
    return warnings


def uninstall(unit_dir: Path = UNIT_DIR, *, run: Runner = run_command) -> Path | None:
    """Stop and disable the service and remove its unit; the user and data_dir are kept (as
    Debian keeps a removed package's data). Returns the removed file, or None."""
    unit_path = unit_dir / UNIT_NAME
    if not unit_path.exists():
        return None
    run(["systemctl", "disable", "--now", UNIT_NAME])
    unit_path.unlink()
    run(["systemctl", "daemon-reload"])
    log.info("removed %s", unit_path)
    return unit_path


def _own_data_dir(data_dir: Path, user: str) -> None:
    data_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    try:
        entry = pwd.getpwnam(user)
    except KeyError:  # not created (a dry run)
        return
    os.chown(data_dir, entry.pw_uid, entry.pw_gid)


def _nologin() -> str:
    for candidate in ("/usr/sbin/nologin", "/sbin/nologin"):
        if Path(candidate).exists():
            return candidate
    return "/bin/false"
