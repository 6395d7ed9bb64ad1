"""``native.trim``: the C heap's memory freed after a load (llama.cpp's temporary buffers) goes
back to the system instead of staying resident."""

import subprocess
import sys

from tests.helpers import ROOT

FREED = """
import ctypes, os, sys
from agent.inference import native
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
blocks = [libc.malloc(32768) for _ in range(2000)]  # below the mmap threshold: on the heap
for b in blocks:
    ctypes.memset(b, 1, 32768)
keep = libc.malloc(32768)  # after them, so the freed blocks are not the heap's top
ctypes.memset(keep, 1, 32768)
for b in blocks:
    libc.free(b)
before = rss()
if sys.argv[1] == "trim":
    native.trim()
print(before - rss())
"""


def given_back(trim: bool) -> int:
    out = subprocess.run([sys.executable, "-c", FREED, "trim" if trim else "no"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True)
    return int(out.stdout)


def test_trim_gives_the_freed_heap_back() -> None:
    assert given_back(trim=False) < 8 << 20  # freed but kept resident by malloc
    assert given_back(trim=True) > 48 << 20  # of ~64 MB freed
