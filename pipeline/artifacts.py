"""Artifact store: content fingerprints, atomic publish and manifests.

A stage's output lives at `<workdir>/artifacts/<stage>/<fingerprint>/`. It is written into a
temporary sibling directory and renamed into place only when complete, with a `manifest.json`
that lists every file of the artifact and its size. A directory is a cache hit only while those
files are all there with those sizes: one deleted or truncated later is rebuilt, not reused.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

MANIFEST = "manifest.json"
# The digests of input files, by (absolute path, size, mtime_ns), kept in the workdir.
DIGEST_CACHE = "input_digests.json"
# Within this long of its last change, a file may change again inside the same mtime tick
# without its size changing, so its digest is not remembered (git's "racy clean" problem).
_SETTLE_NS = 2_000_000_000
_CHUNK = 1 << 20

log = logging.getLogger("pipeline")


def code_version(modules: Iterable[ModuleType]) -> str:
    """Hash of the source of the modules a stage runs, so a code change invalidates its cache."""
    digest = hashlib.sha256()
    for module in sorted(modules, key=lambda m: m.__name__):
        digest.update(module.__name__.encode())
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()[:16]


def fingerprint(
    stage: str, config: dict, inputs: dict[str, str], code: str, files: list | None = None
) -> str:
    """Fingerprint of a stage run: its name, config section, input fingerprints and code.

    `files` are the digests of the files it reads from outside the artifact store (see
    `source_digests`), so a changed input file changes the fingerprint.
    """
    parts = {"stage": stage, "config": config, "inputs": inputs, "code": code}
    if files is not None:
        parts["files"] = files
    payload = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def source_digests(files: list[tuple[str, str]], cache_file: Path) -> list[list[str]]:
    """[config key, path, sha256 of the content] of each (key, path), in the given order.

    A digest is reused from `cache_file` while the file's absolute path, size and mtime_ns are
    unchanged, so a large corpus is hashed once, not on every run.
    """
    cache = _read_digest_cache(cache_file)
    digests = [[key, path, _cached_sha256(Path(path), cache)] for key, path in files]
    if files:
        live = {name: entry for name, entry in cache.items() if os.path.isfile(name)}
        write_json(cache_file, live)
    return digests


def _read_digest_cache(cache_file: Path) -> dict[str, dict]:
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):  # none yet, or unreadable: hash again
        return {}
    return cache if isinstance(cache, dict) else {}


def _cached_sha256(path: Path, cache: dict[str, dict]) -> str:
    name = str(path.resolve())
    stat = path.stat()
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    entry = cache.get(name)
    if isinstance(entry, dict) and {k: entry.get(k) for k in key} == key and "sha256" in entry:
        return entry["sha256"]
    started = time.time_ns()
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    if started - stat.st_mtime_ns > _SETTLE_NS:
        cache[name] = {**key, "sha256": digest.hexdigest()}
    else:
        cache.pop(name, None)
    return digest.hexdigest()


def artifact_files(directory: Path) -> dict[str, int]:
    """{path relative to `directory`: size in bytes} of each file in it but the manifest."""
    files = {}
    for parent, _, names in os.walk(directory):
        for name in names:
            path = Path(parent) / name
            relative = path.relative_to(directory).as_posix()
            if relative != MANIFEST:
                files[relative] = path.stat().st_size
    return dict(sorted(files.items()))


def damage(directory: Path) -> list[str]:
    """How an artifact differs from its manifest's file list: each file missing or resized."""
    try:
        # A manifest without a list was written before there was one: nothing to check.
        files = json.loads((directory / MANIFEST).read_text()).get("files", {})
    except (OSError, ValueError, AttributeError) as error:
        return [f"{MANIFEST} is unreadable: {error}"]
    problems = []
    for relative, size in files.items():
        path = directory / relative
        if not path.is_file():
            problems.append(f"{relative} is missing")
        elif path.stat().st_size != size:
            problems.append(f"{relative} has {path.stat().st_size} bytes, not {size}")
    return problems


class ArtifactStore:
    """Finds and publishes stage artifacts under `<workdir>/artifacts`."""

    def __init__(self, workdir: Path):
        self.root = Path(workdir) / "artifacts"

    def path(self, stage: str, fp: str) -> Path:
        return self.root / stage / fp

    def lookup(self, stage: str, fp: str) -> Path | None:
        """The complete artifact directory for this fingerprint, or None.

        An artifact whose files differ from its manifest's list (one deleted or truncated) is
        not complete: a warning names the files, and the stage's next run replaces it. A
        manifest without a file list (written before the list existed) cannot be checked and
        is trusted, as it was then.
        """
        path = self.path(stage, fp)
        if not (path / MANIFEST).is_file():
            return None
        problems = damage(path)
        if problems:
            more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
            log.warning(
                "%-9s damaged artifact %s (%s%s): not reused; the stage must run again, and its "
                "new artifact replaces this one",
                stage,
                path,
                "; ".join(problems[:5]),
                more,
            )
            return None
        return path

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
        manifest["files"] = artifact_files(staging)
        write_json(staging / MANIFEST, manifest)
        final = self.path(stage, fp)
        if final.exists():  # a leftover of a killed run, or damaged: never a cache hit
            shutil.rmtree(final)
        os.rename(staging, final)
        return final


def write_json(path: Path, data: Any, sort_keys: bool = True) -> None:
    """Writes JSON through a temporary file and a rename, so readers never see half a file."""
    text = json.dumps(data, indent=2, sort_keys=sort_keys, default=str, ensure_ascii=False)
    # A temporary name of its own, so runs writing the same file at once cannot collide.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide it from a model server's user
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
