"""The model runs under the unit's system call filter and MemoryDenyWriteExecute.

systemd is not PID 1 where the tests run, so the unit itself cannot start here. What systemd
does for those lines is load seccomp filters (with libseccomp) before it starts the agent; this
test loads the same filters, built from the unit's own lines and ``systemd-analyze
syscall-filter``'s groups, into a child process and then loads the bundled model there, embeds,
scores and generates. The child first checks that the sandbox is in force: a system call the
filter leaves out and a writable+executable mapping both fail."""

from __future__ import annotations

import ctypes.util
import re
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT, bundled

UNIT = ROOT / "config" / "edge-agent.service"

CHILD = r'''
import ctypes, ctypes.util, errno, json, mmap, os, sys
lib = ctypes.CDLL(ctypes.util.find_library("seccomp"), use_errno=True)
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_init.argtypes = [ctypes.c_uint32]
lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]

class Cmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64),
                ("b", ctypes.c_uint64)]

lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                       ctypes.c_uint, ctypes.POINTER(Cmp)]
lib.seccomp_load.argtypes = [ctypes.c_void_p]
ALLOW, EPERM = 0x7FFF0000, 0x00050000 | errno.EPERM
MASKED_EQ = 7
allowed, model = json.loads(sys.argv[1]), sys.argv[2]

def load(ctx):
    assert lib.seccomp_load(ctx) == 0, "seccomp_load failed"

# MemoryDenyWriteExecute=yes, as systemd builds it (first: the allow-list forbids seccomp)
ctx = lib.seccomp_init(ALLOW)
rules = [("mmap", 0x6, 0x6), ("mprotect", 0x4, 0x4), ("pkey_mprotect", 0x4, 0x4),
         ("shmat", 0o100000, 0o100000)]
for name, mask, value in rules:
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    if nr >= 0:
        cmp = Cmp(2, MASKED_EQ, mask, value)
        assert lib.seccomp_rule_add_array(ctx, EPERM, nr, 1, ctypes.byref(cmp)) == 0, name
load(ctx)

# SystemCallFilter= (allow-list; SystemCallErrorNumber=EPERM for everything else)
ctx = lib.seccomp_init(EPERM)
for name in allowed:
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    if nr >= 0:
        assert lib.seccomp_rule_add_array(ctx, ALLOW, nr, 0, None) == 0, name
load(ctx)
# the sandbox is in force
try:
    os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0))
    sys.exit("setpriority (@resources) was allowed")
except PermissionError:
    pass
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("a writable and executable mapping was allowed")
except PermissionError:
    pass

from pathlib import Path
from agent.inference.model import Model
with Model(Path(model), threads=2, context=512, sha256="") as m:
    vector = m.embed("temperature 27.5 C, above the band 20-24 C")
    prefix, suffix = m.chat("Answer with one word: cool, heat or off.", "27.5 C, band 20-24 C")
    scores = m.score(prefix, suffix, ["cool", "heat", "off"])
    text = m.generate(prefix, suffix, max_tokens=4)
print(json.dumps({"n_embd": len(vector), "scores": scores, "text": text}))
'''


def unit_filter() -> tuple[list[str], list[str], bool]:
    allow: list[str] = []
    deny: list[str] = []
    mdwe = False
    for line in UNIT.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "SystemCallFilter":
            (deny if value.startswith("~") else allow).extend(value.lstrip("~").split())
        elif key == "MemoryDenyWriteExecute":
            mdwe = value.strip() == "yes"
    return allow, deny, mdwe


def syscall_groups() -> dict[str, list[str]]:
    out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True,
                         check=True).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] = []
    for line in out.splitlines():
        if re.match(r"^@[\w-]+$", line):
            current = groups.setdefault(line, [])
        elif line.strip() and not line.strip().startswith("#") and line.startswith(" "):
            current.append(line.strip())
    return groups


def expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    for name in names:
        out |= expand(groups[name], groups) if name.startswith("@") else {name}
    return out


def test_the_model_runs_under_the_units_syscall_filter_and_memory_deny_write_execute() -> None:
    if shutil.which("systemd-analyze") is None or ctypes.util.find_library("seccomp") is None:
        pytest.skip("needs systemd-analyze and libseccomp")
    allow, deny, mdwe = unit_filter()
    assert allow == ["@system-service"] and set(deny) == {"@privileged", "@resources"} and mdwe
    groups = syscall_groups()
    allowed = expand(["@default", *allow], groups) - expand(deny, groups)
    assert "setpriority" not in allowed and "read" in allowed
    child = subprocess.run(
        [sys.executable, "-c", CHILD, __import__("json").dumps(sorted(allowed)),
         str(bundled().path)],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    result = __import__("json").loads(child.stdout.splitlines()[-1])
    assert result["n_embd"] > 0
    assert len(result["scores"]) == 3 and result["text"].strip()
