"""Staging directories: a stage builds `.partial-<fp>/` beside its artifacts, one process at a time.

The process building a staging directory holds an exclusive `flock` on the sibling file
`.partial-<fp>.lock` from before the directory exists until it is published or removed. So a
run can tell a staging directory a live run is writing (lock held) from one a dead run left
(lock free: the kernel drops a process's locks however it ends), and removes only the latter.
Two runs of the same stage and fingerprint take turns instead of writing into one directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

PREFIX = ".partial-"


def staging_path(stage_dir: Path, fp: str) -> Path:
    """Where the artifact `fp` of the stage whose artifacts live in `stage_dir` is built."""
    return stage_dir / f"{PREFIX}{fp}"


def _lock_path(staging: Path) -> Path:
    return staging.with_name(staging.name + ".lock")


def _acquire(path: Path, wait: bool) -> int | None:
    """A descriptor holding the exclusive lock on `path` (created if missing).

    None when another process holds it and `wait` is false. A holder removes the file before
    it lets go, so a lock won on a file no longer at `path` is dropped and taken again.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            return fd
        os.close(fd)


def _release(path: Path, fd: int) -> None:
    path.unlink(missing_ok=True)
    os.close(fd)


@contextlib.contextmanager
def locked_staging(stage_dir: Path, fp: str) -> Iterator[Path]:
    """Yields the staging path of `fp` (not created) while this process holds its lock.

    Waits while another process holds it: that run is building the same artifact, which may
    be published when the wait ends, so look the artifact up again inside the block.
    """
    stage_dir.mkdir(parents=True, exist_ok=True)
    staging = staging_path(stage_dir, fp)
    lock = _lock_path(staging)
    fd = _acquire(lock, wait=True)
    try:
        yield staging
    finally:
        _release(lock, fd)


def remove_abandoned(stage_dir: Path) -> list[Path]:
    """Removes the staging directories under `stage_dir` that no live process holds."""
    removed = []
    for staging in sorted(stage_dir.glob(PREFIX + "*")):
        if not staging.is_dir():
            continue  # a lock file
        lock = _lock_path(staging)
        fd = _acquire(lock, wait=False)
        if fd is None:
            continue  # a live run is writing it
        try:
            if staging.is_dir():  # not published meanwhile
                shutil.rmtree(staging)
                removed.append(staging)
        finally:
            _release(lock, fd)
    return removed
