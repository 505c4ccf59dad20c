"""Artifact store: content fingerprints, atomic publish and manifests.

A stage's output lives at `<workdir>/artifacts/<stage>/<fingerprint>/`. It is written into a
temporary sibling directory and renamed into place only when complete, so an existing directory
with a `manifest.json` is always a whole artifact and a cache hit.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

MANIFEST = "manifest.json"


def code_version(modules: Iterable[ModuleType]) -> str:
    """Hash of the source of the modules a stage runs, so a code change invalidates its cache."""
    digest = hashlib.sha256()
    for module in sorted(modules, key=lambda m: m.__name__):
        digest.update(module.__name__.encode())
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()[:16]


def fingerprint(stage: str, config: dict, inputs: dict[str, str], code: str) -> str:
    """Fingerprint of a stage run: its name, config section, input fingerprints and code."""
    payload = json.dumps(
        {"stage": stage, "config": config, "inputs": inputs, "code": code},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class ArtifactStore:
    """Finds and publishes stage artifacts under `<workdir>/artifacts`."""

    def __init__(self, workdir: Path):
        self.root = Path(workdir) / "artifacts"

    def path(self, stage: str, fp: str) -> Path:
        return self.root / stage / fp

    def lookup(self, stage: str, fp: str) -> Path | None:
        """The complete artifact directory for this fingerprint, or None."""
        path = self.path(stage, fp)
        return path if (path / MANIFEST).is_file() else None

    def read_manifest(self, stage: str, fp: str) -> dict:
        return json.loads((self.path(stage, fp) / MANIFEST).read_text())

    def staging_dir(self, stage: str) -> Path:
        """A fresh temporary directory on the same filesystem as the final location."""
        parent = self.root / stage
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".tmp-", dir=parent))

    def publish(self, staging: Path, stage: str, fp: str, manifest: dict[str, Any]) -> Path:
        """Writes the manifest and renames the staging directory into place."""
        manifest = {"stage": stage, "fingerprint": fp, "created": time.time(), **manifest}
        write_json(staging / MANIFEST, manifest)
        final = self.path(stage, fp)
        if final.exists():  # an incomplete leftover from a killed run: never a cache hit
            shutil.rmtree(final)
        os.rename(staging, final)
        return final


def write_json(path: Path, data: Any, sort_keys: bool = True) -> None:
    """Writes JSON through a temporary file and a rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    text = json.dumps(data, indent=2, sort_keys=sort_keys, default=str, ensure_ascii=False)
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)
