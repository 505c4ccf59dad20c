"""keep_freed_memory: glibc heaps keep their freed top memory instead of trimming it."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from components.allocator import _glibc, keep_freed_memory

ROOT = Path(__file__).resolve().parents[2]

# Allocates 64 MiB in 16 KiB blocks (below glibc's mmap threshold, so from the main heap),
# frees them all and reports the main heap's size (mallinfo2's arena) before and after the frees.
_PROBE = textwrap.dedent(
    """
    import ctypes, json, sys
    sys.path.insert(0, sys.argv[1])
    from components.allocator import keep_freed_memory

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallinfo2.restype = Mallinfo2
    applied = keep_freed_memory(int(sys.argv[2]))
    blocks = [0] * 4096  # the list's own storage comes before the blocks, not above them
    for i in range(len(blocks)):
        blocks[i] = libc.malloc(16 << 10)
    held = libc.mallinfo2().arena
    for block in reversed(blocks):
        libc.free(block)
    print(json.dumps({"applied": applied, "held": held, "after": libc.mallinfo2().arena}))
    """
)


def _probe(pad_mb: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(ROOT), str(pad_mb)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


@pytest.mark.skipif(
    _glibc() is None or not hasattr(_glibc(), "mallinfo2"),
    reason="glibc's allocator only; the probe reads the heap size with mallinfo2 (glibc 2.33+)",
)
def test_heap_keeps_freed_memory_with_a_top_pad():
    default, padded = _probe(0), _probe(128)
    assert not default["applied"] and padded["applied"]
    for run in (default, padded):
        assert run["held"] >= 64 << 20
    # glibc's default trims the freed 64 MiB back to the kernel; a 128 MiB pad keeps it all.
    assert default["after"] < 16 << 20
    assert padded["after"] >= 64 << 20


def test_zero_changes_nothing_and_negative_is_refused():
    assert keep_freed_memory(0) is False
    with pytest.raises(ValueError, match="pad_mb must be 0 or more, got -1"):
        keep_freed_memory(-1)
