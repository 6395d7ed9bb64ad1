"""Start-up check of who can read the agent's secrets and its database.

The command key signs actuator commands, the TLS key and the broker password prove who the
agent is, and the database holds every reading: none of them should be open to other users.
Group access is accepted only for the agent's own private group (``useradd --user-group``),
which lets ``root:edge-agent 0640`` files work.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.config import Config

DB_SUFFIXES = ("", "-wal", "-shm")


def paths_to_check(cfg: Config) -> list[Path]:
    """The secret files a configuration names and the database files."""
    secrets = [cfg.security.command_key_file, cfg.security.identity_key_file,
               cfg.mqtt.tls.key_file, cfg.mqtt.password_file]
    db = [cfg.db_path.with_name(cfg.db_path.name + suffix) for suffix in DB_SUFFIXES]
    return [p for p in secrets if p is not None] + db


def _private_group(gid: int) -> bool:
    """True when ``gid`` is this user's own group, shared with nobody else."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    try:
        members = set(grp.getgrgid(gid).gr_mem)
    except KeyError:
        return False
    members |= {p.pw_name for p in pwd.getpwall() if p.pw_gid == gid}
    return members <= {me}


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def check_permissions(
    paths: Iterable[Path], *, trusted_gids: Collection[int] | None = None
) -> list[str]:
    """One warning for each existing file that users other than the agent can read or change.

    ``trusted_gids``: groups whose access is fine (default: the process's group, if it is a
    private one). Missing files are skipped: whether they must exist is checked elsewhere."""
    if trusted_gids is None:
        gid = os.getegid()
        trusted_gids = {gid} if _private_group(gid) else set()
    warnings = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            continue
        warning = _verdict(path, st, trusted_gids)
        if warning is not None:
            warnings.append(warning)
    return warnings


def _verdict(path: Path, st: os.stat_result, trusted_gids: Collection[int]) -> str | None:
    mode = stat.S_IMODE(st.st_mode)
    group_ok = st.st_gid in trusted_gids
    who, read, write = [], False, False
    if not group_ok and mode & (stat.S_IRGRP | stat.S_IWGRP):
        who.append(f"group {_group_name(st.st_gid)}")
        read, write = bool(mode & stat.S_IRGRP), bool(mode & stat.S_IWGRP)
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        who.append("every user")
        read, write = read or bool(mode & stat.S_IROTH), write or bool(mode & stat.S_IWOTH)
    if not who:
        return None
    what = " and ".join(w for w, on in (("readable", read), ("writable", write)) if on)
    fix = "chmod 640" if group_ok else "chmod 600"
    return f"{path} is {what} by {' and '.join(who)} (mode {mode:04o}); fix: {fix} {path}"


def readable_by(path: Path, user: str) -> bool:
    """Whether ``user`` may read ``path`` by its owner, group and mode (no ACLs)."""
    try:
        entry = pwd.getpwnam(user)
        st = path.stat()
    except (KeyError, OSError):
        return False
    if entry.pw_uid == 0:
        return True
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid == entry.pw_uid:
        return bool(mode & stat.S_IRUSR)
    groups = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    if st.st_gid in groups:
        return bool(mode & stat.S_IRGRP)
    return bool(mode & stat.S_IROTH)
