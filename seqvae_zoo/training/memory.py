"""The C allocator's settings for a training or scoring process on a CPU.

A training step allocates and frees a few hundred megabytes (the output layer's logits, the recurrence's buffers).
glibc's defaults hand large freed blocks back to the kernel, so the next step touches fresh pages and pays a page
fault per 4 KiB: 5 to 10% of a step. Blocks of more than 32 MiB (the logits of a batch of more than about 830
tokens at a 10,000-word vocabulary) glibc always maps afresh and unmaps when freed, whatever its thresholds say.
Keeping freed memory in the process, and serving every block from it, removes that cost; the command line does it
for every command, and a library user can call :func:`keep_freed_memory` once at start-up (or set
``MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_MMAP_MAX_=0`` in the environment).
"""

from __future__ import annotations

import ctypes

#: mallopt's parameter numbers (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Ask glibc to keep up to 1 GiB of freed memory instead of returning it to the kernel, and to serve every block
    from its heap rather than from a fresh mapping (glibc still maps one where the heap cannot grow); False where
    the C library is not glibc (nothing changes then)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_TRIM_THRESHOLD, 2 ** 30)) and bool(libc.mallopt(_M_MMAP_MAX, 0))
