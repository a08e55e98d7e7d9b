"""Process memory settings for CPU runs.

A network's round allocates (n, d) gradients, messages and a new x of tens of MB each and
frees them again; glibc serves blocks that large with mmap and returns them to the kernel on
free, so every round page-faults them afresh (ResNet18, the SGD update of 11.2M parameters:
45 ms and 21,800 page faults a round against 10 ms and none with the memory kept; measured by
benchmarks/bench_neural.py's phases). :func:`keep_freed_memory` makes glibc serve them from
its heap and keep what is freed for the next round. The process then holds its peak memory
until it exits, which a run does anyway. Transparent huge pages (``THP_MEM_ALLOC_ENABLE``)
were measured as well and rejected: they remove most faults but stall 100-240 ms now and then
in the kernel's compaction.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

log = logging.getLogger("compress_bench")

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_MAX = -4
_KEEP_UP_TO = 2**31 - 1  # bytes of free heap top glibc may keep (the largest value it takes)

_done = False


def keep_freed_memory() -> bool:
    """Serve large blocks from the heap and keep freed memory (glibc only; elsewhere a no-op).
    True when the settings are in effect."""
    global _done
    if _done:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_UP_TO) == 1
    except (OSError, AttributeError) as err:  # no usable libc: run as before
        log.debug("mallopt unavailable: %s", err)
        return False
    _done = ok
    return ok
