"""Pushes a SavedModel to `<serving>/<name>/<version>/` the way TF Serving expects.

The copy is made in a hidden temporary directory and renamed into its integer version
directory, so a model server polling the base path never sees half a model.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

LINEAGE = Path("assets.extra") / "lineage.json"


def versions(serving_root: Path) -> list[int]:
    """The integer version directories under a model's base path, ascending."""
    if not serving_root.is_dir():
        return []
    return sorted(int(p.name) for p in serving_root.iterdir() if p.name.isdigit() and p.is_dir())


def push(saved_model: Path, serving_root: Path, export_fingerprint: str) -> tuple[Path, bool]:
    """Pushes unless the newest version already holds this export; returns (dir, pushed)."""
    existing = versions(serving_root)
    if existing:
        latest = serving_root / str(existing[-1])
        lineage = latest / LINEAGE
        if (
            lineage.is_file()
            and json.loads(lineage.read_text()).get("fingerprint") == export_fingerprint
        ):
            return latest, False
    version = existing[-1] + 1 if existing else 1
    serving_root.mkdir(parents=True, exist_ok=True)
    tmp = serving_root / f".tmp-{version}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(saved_model, tmp)
    (tmp / LINEAGE).parent.mkdir(exist_ok=True)
    (tmp / LINEAGE).write_text(
        json.dumps({"fingerprint": export_fingerprint, "source": str(saved_model)}, indent=2)
    )
    final = serving_root / str(version)
    os.rename(tmp, final)
    return final, True


def prune(serving_root: Path, keep: int) -> list[int]:
    """Deletes all but the newest `keep` versions; returns the deleted version numbers."""
    old = versions(serving_root)[:-keep] if keep > 0 else []
    for version in old:
        # Rename first: a server never sees a half-deleted version directory.
        doomed = serving_root / f".deleting-{version}"
        os.rename(serving_root / str(version), doomed)
        shutil.rmtree(doomed)
    return old
