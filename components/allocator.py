"""Keeping freed heap memory in the process instead of handing it back to the kernel.

A training step allocates and frees the same large buffers every step. With glibc's default
settings the freed memory at the top of each heap is returned to the kernel (trimmed), so the
next step faults the same pages in again, each cleared by the kernel. On the 2-core machine
that cost about 0.15 of a core in the kernel during the `tutorial` preset's compiled step, and
with glibc's M_TOP_PAD raised to 256 MB (heaps keep that much free memory when trimmed) the
kernel time fell to 0.007 of a core and the step went from 717-755 ms to 647-690 ms (packed
128 x 32 batches).

glibc only; elsewhere (macOS, musl) nothing is changed. The setting is process-wide and cannot
be undone by this module; the cost is that up to `pad_mb` of freed memory per heap stays
resident.

TensorFlow's own CPU allocator hands most tensors to that malloc too, and a tensor larger than
glibc's mmap threshold (32 MB at most: the tutorial preset's 4,096 x 8,000 logits are 131 MB) is
always mapped fresh and unmapped when freed, pad or no pad. On a slower 2-core machine that
made a compiled `tutorial` step fault in 4 million pages over 24 steps (17 s of kernel time in
41 s) and the naive step more. `use_bfc_cpu_allocator` has TensorFlow serve CPU tensors from its
BFC pool instead (`TF_CPU_ALLOCATOR_USE_BFC`), which keeps the memory it has grown to: 66
thousand faults, and the steps 1.35x (compiled) and 1.57x (naive) as fast
(`train.cpu_allocator`).

Where TensorFlow turns its oneDNN kernels on (`TF_ENABLE_ONEDNN_OPTS`; by default on x86 CPUs
with AVX-512 VNNI, BF16 or AMX, such as the AMD EPYC this was later measured on), CPU tensors
come from oneDNN's allocator, itself a BFC pool, whatever TF_CPU_ALLOCATOR_USE_BFC says: there
`system` changes nothing (24 steps of a 64 MB product: 10,881 page faults either way, against
338,582 with oneDNN off and the system allocator).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TOP_PAD = -2  # glibc's malloc.h


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    # gnu_get_libc_version exists in glibc only; musl has no working M_TOP_PAD.
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    return libc


def keep_freed_memory(pad_mb: int) -> bool:
    """Sets glibc's M_TOP_PAD to `pad_mb` MiB (0: leaves glibc's defaults alone).

    Returns whether the setting was applied.
    """
    if pad_mb < 0:
        raise ValueError(f"pad_mb must be 0 or more, got {pad_mb}")
    if pad_mb == 0:
        return False
    libc = _glibc()
    if libc is None:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(libc.mallopt(M_TOP_PAD, min(pad_mb << 20, 2**31 - 1)))


# Read by TensorFlow once, when it creates its CPU allocator: at the first tensor, not import.
BFC_ENV = "TF_CPU_ALLOCATOR_USE_BFC"


def use_bfc_cpu_allocator(enabled: bool) -> bool:
    """Asks TensorFlow to allocate CPU tensors from its BFC pool (or from malloc, `False`).

    Takes effect only when called before the process's first TensorFlow tensor; a value of
    TF_CPU_ALLOCATOR_USE_BFC already in the environment is the user's, and wins. Returns
    whether the environment now asks for the BFC pool (`bfc_cpu_allocator_active` says whether
    TensorFlow uses it).
    """
    if BFC_ENV not in os.environ:
        os.environ[BFC_ENV] = "true" if enabled else "false"
    return os.environ[BFC_ENV].strip().lower() in ("1", "true")


def bfc_cpu_allocator_active() -> bool:
    """Whether TensorFlow's CPU tensors come from its BFC pool (it alone keeps CPU memory
    statistics); creates the CPU allocator if no tensor has yet."""
    import tensorflow as tf

    try:
        tf.config.experimental.get_memory_info("CPU:0")
    except ValueError:
        return False
    return True
