"""keep_freed_memory: glibc heaps keep their freed top memory instead of trimming it;
use_bfc_cpu_allocator: TensorFlow's CPU tensors come from its BFC pool."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from components.allocator import BFC_ENV, _glibc, keep_freed_memory, use_bfc_cpu_allocator

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


# Chooses the allocator after importing TensorFlow and Keras (not yet a tensor), then makes
# tensors and reports whether they came from the BFC pool and how much it holds.
_BFC_PROBE = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, sys.argv[1])
    import keras, tensorflow as tf
    from components.allocator import bfc_cpu_allocator_active, use_bfc_cpu_allocator

    asked = use_bfc_cpu_allocator(sys.argv[2] == "bfc")
    x = tf.ones([1024, 1024])
    y = (x + 1.0).numpy()
    active = bfc_cpu_allocator_active()
    info = tf.config.experimental.get_memory_info("CPU:0") if active else None
    print(json.dumps({"asked": asked, "active": active, "info": info, "sum": float(y.sum())}))
    """
)


def _bfc_probe(choice: str, environment: dict[str, str]) -> dict:
    # oneDNN off: where TensorFlow turns it on (CPUs with AVX-512 VNNI and newer), its own BFC
    # pool serves CPU tensors whatever TF_CPU_ALLOCATOR_USE_BFC says.
    env = {k: v for k, v in os.environ.items() if k != BFC_ENV}
    env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    out = subprocess.run(
        [sys.executable, "-c", _BFC_PROBE, str(ROOT), choice],
        check=True,
        capture_output=True,
        text=True,
        env={**env, **environment},
    ).stdout
    return json.loads(out.splitlines()[-1])


def test_bfc_pool_serves_cpu_tensors_when_chosen_before_the_first_tensor():
    bfc = _bfc_probe("bfc", {})
    assert bfc["asked"] and bfc["active"]
    # Two 4 MiB tensors were live at their peak; the pool has grown to hold them.
    assert bfc["info"]["peak"] >= 2 * (4 << 20)
    assert bfc["sum"] == 2.0 * 1024 * 1024
    system = _bfc_probe("system", {})
    assert system == {"asked": False, "active": False, "info": None, "sum": 2.0 * 1024 * 1024}


def test_the_environment_wins_over_the_choice():
    assert _bfc_probe("bfc", {BFC_ENV: "false"})["active"] is False
    assert _bfc_probe("system", {BFC_ENV: "1"})["active"] is True


def test_onednn_serves_from_its_pool_whatever_the_choice():
    onednn = _bfc_probe("system", {"TF_ENABLE_ONEDNN_OPTS": "1"})
    assert onednn["asked"] is False and onednn["active"] is True


def test_use_bfc_cpu_allocator_sets_the_variable_only_when_unset(monkeypatch):
    monkeypatch.delenv(BFC_ENV, raising=False)
    assert use_bfc_cpu_allocator(True) is True
    assert os.environ[BFC_ENV] == "true"
    assert use_bfc_cpu_allocator(False) is True  # already set: left as it is
    monkeypatch.setenv(BFC_ENV, "False")
    assert use_bfc_cpu_allocator(True) is False
    assert os.environ[BFC_ENV] == "False"
