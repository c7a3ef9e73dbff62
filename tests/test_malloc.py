"""The fixed mmap threshold (rag.malloc): glibc accepts it, and a large block freed after it is
returned to the system instead of staying in the heap."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import ctypes, sys
from rag.malloc import pin_mmap_threshold
if sys.argv[1] == "pin":
    assert pin_mmap_threshold()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * 4096
# free a large block (glibc then raises its dynamic threshold), then allocate and touch many
# 1 MiB blocks and free them: with the dynamic threshold they come from the heap and stay
big = libc.malloc(16 << 20); ctypes.memset(big, 1, 16 << 20); libc.free(big)
blocks = [libc.malloc(1 << 20) for _ in range(200)]
for b in blocks:
    ctypes.memset(b, 1, 1 << 20)
before = rss()
for b in blocks[::2]:
    libc.free(b)
print((before - rss()) >> 20)
"""


def released_mib(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def test_freed_blocks_go_back_to_the_system_with_the_threshold_pinned():
    assert released_mib("pin") >= 90  # ~100 MiB of the 200 freed
    assert released_mib("default") <= 10  # glibc's default keeps them (what grew the server's RSS)
