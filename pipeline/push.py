"""Pushes a SavedModel to `<serving>/<name>/<version>/` the way TF Serving expects.

The copy is made in a hidden temporary directory and renamed into its integer version
directory, so a model server polling the base path never sees half a model. Pushes and prunes
of one model take turns (a lock file in its base path), so runs finishing at once cannot pick
the same version.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

LINEAGE = Path("assets.extra") / "lineage.json"
_LOCK = ".push.lock"


def _is_version(name: str) -> bool:
    # As TF Serving reads them: decimal digits, no leading zero ("0007" is not version 7).
    return name.isascii() and name.isdigit() and name == str(int(name))


def versions(serving_root: Path) -> list[int]:
    """The integer version directories under a model's base path, ascending."""
    if not serving_root.is_dir():
        return []
    return sorted(int(p.name) for p in serving_root.iterdir() if _is_version(p.name) and p.is_dir())


def model_digest(saved_model: Path) -> str:
    """sha256 over a SavedModel's files (relative paths and bytes), lineage.json left out."""
    digest = hashlib.sha256()
    files = sorted(p for p in saved_model.rglob("*") if p.is_file())
    for path in files:
        relative = path.relative_to(saved_model)
        if relative == LINEAGE:
            continue
        digest.update(relative.as_posix().encode() + b"\0")
        with open(path, "rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(serving_root: Path) -> Iterator[None]:
    serving_root.mkdir(parents=True, exist_ok=True)
    with open(serving_root / _LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def push(saved_model: Path, serving_root: Path, export_fingerprint: str) -> tuple[Path, bool]:
    """Pushes unless the newest version already holds this export, or a byte-identical model
    (an export redone for a setting that does not change the model); returns (dir, pushed)."""
    digest = model_digest(saved_model)
    with _locked(serving_root):
        existing = versions(serving_root)
        if existing:
            latest = serving_root / str(existing[-1])
            lineage = latest / LINEAGE
            pushed = json.loads(lineage.read_text()) if lineage.is_file() else {}
            same = pushed.get("fingerprint") == export_fingerprint
            if same or pushed.get("model_sha256") == digest:
                return latest, False
        version = existing[-1] + 1 if existing else 1
        tmp = serving_root / f".tmp-{version}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(saved_model, tmp)
        (tmp / LINEAGE).parent.mkdir(exist_ok=True)
        lineage_record = {
            "fingerprint": export_fingerprint,
            "model_sha256": digest,
            "source": str(saved_model),
        }
        (tmp / LINEAGE).write_text(json.dumps(lineage_record, indent=2))
        final = serving_root / str(version)
        os.rename(tmp, final)
        return final, True


def prune(serving_root: Path, keep: int) -> list[int]:
    """Deletes all but the newest `keep` versions; returns the deleted version numbers."""
    with _locked(serving_root):
        return _prune(serving_root, keep)


def _prune(serving_root: Path, keep: int) -> list[int]:
    old = versions(serving_root)[:-keep] if keep > 0 else []
    for version in old:
        # Rename first: a server never sees a half-deleted version directory.
        doomed = serving_root / f".deleting-{version}"
        os.rename(serving_root / str(version), doomed)
        shutil.rmtree(doomed)
    return old
